"""The scripted peer's packets (tests/peer/packets.py): what it builds, it parses back, with
checksums the kernel accepts. The live harness is in tests/integration/test_peer_*.py."""

from __future__ import annotations

import socket
import struct

import pytest

from tests.peer.packets import (
    ACK,
    FIN,
    PSH,
    SYN,
    Options,
    Segment,
    build,
    flag_bits,
    flag_text,
    parse,
)

ENDS = {
    socket.AF_INET: ("192.0.2.2", "192.0.2.1"),
    socket.AF_INET6: ("2001:db8::2", "2001:db8::1"),
}


def _sum16(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.parametrize("family", list(ENDS), ids=["ipv4", "ipv6"])
def test_a_segment_survives_build_and_parse(family: int) -> None:
    src, dst = ENDS[family]
    options = Options(mss=1460, wscale=7, sack_ok=True, timestamp=(1, 2), fastopen=b"\1" * 8)
    sent = Segment(family, src, dst, 40000, 36000, 0xFFFFFFF0, 5, SYN | ACK, 1000, options, b"x")
    got = parse(build(sent))
    assert got == sent  # `at` and `checksum_ok` included: 0.0 and True


def test_ipv4_header_checksum_verifies() -> None:
    packet = build(Segment(socket.AF_INET, *ENDS[socket.AF_INET], 1, 2, 3, flags=SYN))
    assert _sum16(packet[:20]) == 0xFFFF


def test_a_corrupted_segment_is_reported() -> None:
    packet = bytearray(build(Segment(socket.AF_INET6, *ENDS[socket.AF_INET6], 1, 2, 3)))
    packet[-1] ^= 0xFF  # the urgent pointer: only the checksum notices
    got = parse(bytes(packet))
    assert got is not None and not got.checksum_ok


def test_not_tcp_is_none() -> None:
    icmpv6 = struct.pack("!IHBB16s16s", 6 << 28, 0, 58, 255, b"\0" * 16, b"\0" * 16)
    assert parse(icmpv6) is None
    assert parse(b"") is None


def test_a_cookie_request_is_an_empty_fast_open_option() -> None:
    encoded = Options(fastopen=b"").encode()
    assert encoded[:2] == bytes([34, 2]) and len(encoded) % 4 == 0
    assert Options.decode(encoded).fastopen == b""


@pytest.mark.parametrize(
    ("text", "bits"), [("S", SYN), ("S.", SYN | ACK), ("F.", FIN | ACK), ("P.", PSH | ACK)]
)
def test_flags_in_packetdrill_notation(text: str, bits: int) -> None:
    assert flag_bits(text) == bits
    assert flag_text(bits) == text


def test_an_unknown_flag_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown TCP flag 'X'"):
        flag_bits("SX")
