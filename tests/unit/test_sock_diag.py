"""sock_diag's netlink replies decoded from bytes laid out as the kernel sends them."""

from __future__ import annotations

import socket
import struct

import pytest

from synfin.kernel.sock_diag import (
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_HEADER,
    SOCK_DIAG_BY_FAMILY,
    TIMEWAIT_TIMER,
    decode,
    messages,
)

INET_DIAG_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")  # include/uapi/linux/inet_diag.h


def message(kind: int, payload: bytes) -> bytes:
    """A netlink message, padded to 4 bytes as NLMSG_ALIGN pads it."""
    header = NLMSG_HEADER.pack(NLMSG_HEADER.size + len(payload), kind, 2, 1, 0)
    return (header + payload).ljust((NLMSG_HEADER.size + len(payload) + 3) & ~3, b"\0")


def diag(
    family: int, state: int, timer: int, src: bytes, sport: int, dst: bytes, dport: int
) -> bytes:
    return INET_DIAG_MSG.pack(
        family, state, timer, 0, sport.to_bytes(2, "big"), dport.to_bytes(2, "big"),
        src.ljust(16, b"\0"), dst.ljust(16, b"\0"), 0, b"\0" * 8, 0, 0, 0, 0, 0,
    )  # fmt: skip


def test_a_buffer_of_replies_then_done() -> None:
    ipv4 = diag(socket.AF_INET, 6, TIMEWAIT_TIMER, bytes([192, 0, 2, 1]), 40000,
                bytes([192, 0, 2, 2]), 80)  # fmt: skip
    odd = b"\x01\x02\x03"  # a payload whose length is not a multiple of 4: padded after it
    buffer = message(SOCK_DIAG_BY_FAMILY, odd) + message(SOCK_DIAG_BY_FAMILY, ipv4)
    buffer += message(NLMSG_DONE, b"\0\0\0\0")
    found = list(messages(memoryview(buffer)))
    assert [kind for kind, _ in found] == [SOCK_DIAG_BY_FAMILY, SOCK_DIAG_BY_FAMILY, NLMSG_DONE]
    assert bytes(found[0][1]) == odd
    sock = decode(found[1][1], socket.AF_INET, netns=7)
    assert sock.timewait and sock.state == 6 and sock.netns == 7
    assert sock.saddr == b"\0" * 10 + b"\xff\xff" + bytes([192, 0, 2, 1])
    assert (sock.sport, sock.dport) == (40000, 80)
    assert sock.daddr[-4:] == bytes([192, 0, 2, 2])


def test_ipv6_addresses_stay_as_sent_and_full_sockets_are_not_timewait() -> None:
    src, dst = bytes(range(16)), bytes(range(16, 32))
    sock = decode(diag(socket.AF_INET6, 5, 0, src, 1, dst, 65535), socket.AF_INET6, netns=1)
    assert (sock.saddr, sock.daddr, sock.sport, sock.dport) == (src, dst, 1, 65535)
    assert not sock.timewait


def test_an_error_message_and_a_truncated_header() -> None:
    error = message(NLMSG_ERROR, struct.pack("=i", -1) + b"\0" * 16)
    kind, payload = next(messages(memoryview(error)))
    assert kind == NLMSG_ERROR and struct.unpack_from("=i", payload)[0] == -1
    broken = NLMSG_HEADER.pack(4, SOCK_DIAG_BY_FAMILY, 0, 1, 0)  # claims fewer bytes than a header
    with pytest.raises(OSError, match="netlink message of 4 bytes"):
        list(messages(memoryview(broken)))
