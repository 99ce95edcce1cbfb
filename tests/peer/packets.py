"""IPv4/IPv6 + TCP segments, built and parsed by hand with ``struct``.

Small on purpose: the harness needs the IP header, the TCP header, five options and a
checksum, all of which fit here. Scapy would have to be installed (it is not in the venv
and Debian's python3-scapy is a system package), pulls in a large import, and its layered
packet model hides exactly the numbers these tests compare with the kernel's.

Flags are written as packetdrill writes them: ``S`` SYN, ``F`` FIN, ``R`` RST, ``P`` PSH,
``U`` URG, ``E`` ECE, ``W`` CWR and ``.`` for ACK (``S.`` is a SYN-ACK, ``F.`` a FIN-ACK).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass, field

IPPROTO_TCP = 6
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = (1 << bit for bit in range(8))
# Letter order in canonical flag text; "." (ACK) always last, as packetdrill prints it.
_LETTERS = (("S", SYN), ("F", FIN), ("R", RST), ("P", PSH), ("U", URG), ("E", ECE), ("W", CWR))

OPT_EOL, OPT_NOP, OPT_MSS, OPT_WSCALE, OPT_SACK_OK, OPT_SACK, OPT_TIMESTAMP = 0, 1, 2, 3, 4, 5, 8
OPT_FASTOPEN = 34  # RFC 7413


def flag_bits(text: str) -> int:
    """``"S."`` -> SYN|ACK. Unknown letters are an error, not silently dropped."""
    bits = 0
    for char in text:
        if char == ".":
            bits |= ACK
            continue
        found = dict(_LETTERS).get(char)
        if found is None:
            raise ValueError(f"unknown TCP flag {char!r} in {text!r} (use S F R P U E W .)")
        bits |= found
    return bits


def flag_text(bits: int) -> str:
    text = "".join(letter for letter, bit in _LETTERS if bits & bit)
    return text + ("." if bits & ACK else "")


@dataclass(frozen=True)
class Options:
    """The TCP options the tests use; ``fastopen=b""`` is a cookie request (no cookie)."""

    mss: int | None = None
    wscale: int | None = None
    sack_ok: bool = False
    timestamp: tuple[int, int] | None = None  # (TSval, TSecr)
    fastopen: bytes | None = None
    sack: tuple[tuple[int, int], ...] = ()
    other: tuple[tuple[int, bytes], ...] = ()  # (kind, value) of anything else seen

    def encode(self) -> bytes:
        out = b""
        if self.mss is not None:
            out += struct.pack("!BBH", OPT_MSS, 4, self.mss)
        if self.sack_ok:
            out += struct.pack("!BB", OPT_SACK_OK, 2)
        if self.timestamp is not None:
            out += struct.pack("!BBII", OPT_TIMESTAMP, 10, *self.timestamp)
        if self.wscale is not None:
            out += struct.pack("!BBBB", OPT_NOP, OPT_WSCALE, 3, self.wscale)
        if self.fastopen is not None:
            out += struct.pack("!BB", OPT_FASTOPEN, 2 + len(self.fastopen)) + self.fastopen
        if self.sack:
            blocks = b"".join(struct.pack("!II", left, right) for left, right in self.sack)
            out += struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK, 2 + len(blocks)) + blocks
        for kind, value in self.other:
            out += struct.pack("!BB", kind, 2 + len(value)) + value
        out += bytes([OPT_EOL]) * (-len(out) % 4)  # the header counts 32-bit words
        if len(out) > 40:
            raise ValueError(f"TCP options of {len(out)} bytes do not fit in 40")
        return out

    @classmethod
    def decode(cls, data: bytes) -> Options:
        found: dict[str, object] = {}
        other: list[tuple[int, bytes]] = []
        i = 0
        while i < len(data):
            kind = data[i]
            if kind == OPT_EOL:
                break
            if kind == OPT_NOP:
                i += 1
                continue
            if i + 1 >= len(data) or data[i + 1] < 2:
                other.append((kind, data[i:]))  # malformed: kept, not guessed at
                break
            value = data[i + 2 : i + data[i + 1]]
            i += data[i + 1]
            if kind == OPT_MSS and len(value) == 2:
                found["mss"] = struct.unpack("!H", value)[0]
            elif kind == OPT_WSCALE and len(value) == 1:
                found["wscale"] = value[0]
            elif kind == OPT_SACK_OK:
                found["sack_ok"] = True
            elif kind == OPT_TIMESTAMP and len(value) == 8:
                found["timestamp"] = struct.unpack("!II", value)
            elif kind == OPT_FASTOPEN:
                found["fastopen"] = bytes(value)
            elif kind == OPT_SACK:
                pairs = [struct.unpack_from("!II", value, j) for j in range(0, len(value) - 7, 8)]
                found["sack"] = tuple(pairs)
            else:
                other.append((kind, bytes(value)))
        return cls(other=tuple(other), **found)  # type: ignore[arg-type]

    def __str__(self) -> str:
        parts = []
        if self.mss is not None:
            parts.append(f"mss {self.mss}")
        if self.sack_ok:
            parts.append("sackOK")
        if self.timestamp is not None:
            parts.append("TS val {} ecr {}".format(*self.timestamp))
        if self.wscale is not None:
            parts.append(f"wscale {self.wscale}")
        if self.fastopen is not None:
            parts.append(f"FO {self.fastopen.hex() or 'request'}")
        parts += [f"sack {left}:{right}" for left, right in self.sack]
        parts += [f"opt{kind}" for kind, _ in self.other]
        return ",".join(parts)


@dataclass(frozen=True)
class Segment:
    """One TCP segment with its IP addresses (text form, as ``socket`` takes them)."""

    family: int
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int = 0
    flags: int = 0
    window: int = 65535
    options: Options = field(default_factory=Options)
    payload: bytes = b""
    checksum_ok: bool = True  # parse(): whether the TCP checksum verified
    at: float = 0.0  # time.monotonic() when read from the tun device (0: built here)

    def has(self, flags: str) -> bool:
        bits = flag_bits(flags)
        return self.flags & bits == bits

    @property
    def flag_text(self) -> str:
        return flag_text(self.flags)

    @property
    def space(self) -> int:
        """Sequence numbers it takes: its data, and one each for SYN and FIN."""
        return len(self.payload) + bool(self.flags & SYN) + bool(self.flags & FIN)

    def describe(self, own_isn: int | None = None, other_isn: int | None = None) -> str:
        """packetdrill's notation: ``S. 0:0(0) ack 1 win 65535 <mss 1460>``, relative to
        the ISNs when they are known."""

        def rel(value: int, isn: int | None) -> int:
            return value if isn is None else (value - isn) & 0xFFFFFFFF

        seq = rel(self.seq, own_isn)
        text = f"{self.flag_text} {seq}:{(seq + len(self.payload)) & 0xFFFFFFFF}"
        text += f"({len(self.payload)})"
        if self.flags & ACK:
            text += f" ack {rel(self.ack, other_isn)}"
        text += f" win {self.window}"
        options = str(self.options)
        return text + (f" <{options}>" if options else "")

    def to_bytes(self) -> bytes:
        return build(self)


def _addresses(family: int, src: str, dst: str) -> tuple[bytes, bytes]:
    return socket.inet_pton(family, src), socket.inet_pton(family, dst)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(family: int, src: bytes, dst: bytes, length: int) -> bytes:
    if family == socket.AF_INET:
        return src + dst + struct.pack("!BBH", 0, IPPROTO_TCP, length)
    return src + dst + struct.pack("!IxxxB", length, IPPROTO_TCP)


def _tcp(seg: Segment, src: bytes, dst: bytes) -> bytes:
    options = seg.options.encode()
    offset = (20 + len(options)) // 4
    header = struct.pack(
        "!HHIIBBHHH",
        seg.sport,
        seg.dport,
        seg.seq & 0xFFFFFFFF,
        seg.ack & 0xFFFFFFFF,
        offset << 4,
        seg.flags & 0xFF,
        seg.window,
        0,  # checksum, filled in below
        0,  # urgent pointer
    )
    body = header + options + seg.payload
    checksum = _checksum(_pseudo_header(seg.family, src, dst, len(body)) + body)
    return body[:16] + struct.pack("!H", checksum) + body[18:]


def build(seg: Segment) -> bytes:
    """The IP packet carrying ``seg``, checksums included, as written to a tun device."""
    src, dst = _addresses(seg.family, seg.src, seg.dst)
    tcp = _tcp(seg, src, dst)
    if seg.family == socket.AF_INET:
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, IPPROTO_TCP, 0, src, dst
        )
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return header + tcp
    header = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), IPPROTO_TCP, 64, src, dst)
    return header + tcp


def parse(packet: bytes, at: float = 0.0) -> Segment | None:
    """The TCP segment in an IP packet; None for anything else (ICMPv6, MLD, fragments)."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        header = (packet[0] & 0x0F) * 4
        total, fragment, proto = struct.unpack_from("!H2xH1xB", packet, 2)
        if proto != IPPROTO_TCP or fragment & 0x1FFF or fragment & 0x2000:
            return None
        family, src, dst = socket.AF_INET, packet[12:16], packet[16:20]
        tcp = packet[header:total]
    elif version == 6 and len(packet) >= 40:
        length, next_header = struct.unpack_from("!HB", packet, 4)
        if next_header != IPPROTO_TCP:
            return None  # extension headers never come from these tests' sockets
        family, src, dst = socket.AF_INET6, packet[8:24], packet[24:40]
        tcp = packet[40 : 40 + length]
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport, seq, ack, offset, flags, window = struct.unpack_from("!HHIIBBH", tcp)
    data_at = (offset >> 4) * 4
    return Segment(
        family=family,
        src=str(ipaddress.ip_address(src)),
        dst=str(ipaddress.ip_address(dst)),
        sport=sport,
        dport=dport,
        seq=seq,
        ack=ack,
        flags=flags,
        window=window,
        options=Options.decode(tcp[20:data_at]),
        payload=bytes(tcp[data_at:]),
        checksum_ok=_checksum(_pseudo_header(family, src, dst, len(tcp)) + tcp) == 0,
        at=at,
    )
