"""TCP segments as ``probes/tcp_segments.c`` captures them (``probes/synfin_segments.h``).

A segment knows its own 4-tuple, flags and sequence numbers; which connection it belongs to
and what it means there is decided by collector/ladder/dialogue.py.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from synfin.records import abi
from synfin.records.addresses import Endpoints, family_name, format_endpoint
from synfin.records.pump import RecordFormat

_HEADER = abi.segments()

# TCP header flags (TCP_FLAG_* in synfin_segments.h).
Flag = enum.IntFlag("Flag", _HEADER.prefixed("TCP_FLAG_"), module=__name__)  # type: ignore[misc]


# The order people write flags in ("SYN+ACK", "FIN+ACK").
_FLAG_ORDER = (Flag.SYN, Flag.FIN, Flag.RST, Flag.PSH, Flag.ACK)

# struct synfin_segment, read from the header; decode_segment unpacks it in this order.
_LAYOUT = _HEADER.struct("synfin_segment")
_LAYOUT.require(
    ("ts_ns", "seq", "ack", "ifindex", "family", "sport", "dport", "window", "payload_len",
     "flags", "outgoing", "answers", "saddr", "daddr")
)  # fmt: skip
SEGMENT_LAYOUT = _LAYOUT.codec()
SEGMENT_SIZE = SEGMENT_LAYOUT.size

STAT_SENT = _HEADER["SEGMENT_STAT_SENT"]
STAT_LOST = _HEADER["SEGMENT_STAT_LOST"]


def covers(ack: int, needed: int) -> bool:
    """``ack`` acknowledges everything before ``needed``: sequence numbers wrap at 2^32, so
    "at or after" is a signed difference, as the kernel's after() has it."""
    return ((ack - needed) & 0xFFFFFFFF) < 0x80000000


class SegmentDecodeError(ValueError):
    """A record that does not have the layout of struct synfin_segment."""


@dataclass(frozen=True, slots=True)
class Segment(Endpoints):
    """One captured segment; ``saddr:sport`` sent it to ``daddr:dport``."""

    ts_ns: int
    family: int
    saddr: bytes
    sport: int
    daddr: bytes
    dport: int
    seq: int
    ack: int
    flags: Flag
    payload_len: int = 0
    window: int = 0
    ifindex: int = 0
    outgoing: bool = False
    answers: bool = False  # the probe kept it as the answer to a SYN or FIN

    @property
    def sender(self) -> str:
        return format_endpoint(self.family, self.saddr, self.sport)

    @property
    def receiver(self) -> str:
        return format_endpoint(self.family, self.daddr, self.dport)

    def has(self, flag: Flag) -> bool:
        return bool(self.flags & flag)

    @property
    def flag_names(self) -> str:
        """``SYN``, ``SYN+ACK``, ``FIN+ACK``, ``ACK``: PSH is left out, as diagrams do."""
        names = [f.name or "" for f in _FLAG_ORDER if self.flags & f and f != Flag.PSH]
        return "+".join(names) or "none"

    @property
    def sequence_space(self) -> int:
        """Sequence numbers this segment takes: its data, plus one each for SYN and FIN."""
        return self.payload_len + self.has(Flag.SYN) + self.has(Flag.FIN)

    @property
    def flow(self) -> tuple[int, bytes, int, bytes, int]:
        return (self.family, self.saddr, self.sport, self.daddr, self.dport)

    def to_dict(self) -> dict[str, object]:
        return {
            "ts_ns": self.ts_ns,
            "family": family_name(self.family),
            "from": self.sender,
            "to": self.receiver,
            "flags": self.flag_names,
            "seq": self.seq,
            "ack": self.ack if self.has(Flag.ACK) else None,
            "payload_len": self.payload_len,
            "window": self.window,
        }


def segment_from_fields(fields: tuple[object, ...]) -> Segment:
    """A Segment from struct synfin_segment's fields as ``SEGMENT_LAYOUT`` unpacks them."""
    (
        ts_ns, seq, ack, ifindex, family, sport, dport, window, payload_len,
        flags, outgoing, answers, saddr, daddr,
    ) = fields  # fmt: skip
    return Segment(
        ts_ns=ts_ns,
        family=family,
        saddr=saddr,
        sport=sport,
        daddr=daddr,
        dport=dport,
        seq=seq,
        ack=ack,
        flags=Flag(flags),
        payload_len=payload_len,
        window=window,
        ifindex=ifindex,
        outgoing=bool(outgoing),
        answers=bool(answers),
    )


def decode_segment(record: bytes | memoryview) -> Segment:
    if len(record) < SEGMENT_SIZE:
        raise SegmentDecodeError(f"record of {len(record)} bytes, expected {SEGMENT_SIZE}")
    return segment_from_fields(SEGMENT_LAYOUT.unpack_from(record))


SEGMENT_FORMAT = RecordFormat(SEGMENT_LAYOUT, segment_from_fields, SegmentDecodeError)


def encode_segment(segment: Segment) -> bytes:
    """The record the probe would have written (for tests and fixtures)."""
    return SEGMENT_LAYOUT.pack(
        segment.ts_ns, segment.seq, segment.ack, segment.ifindex, segment.family,
        segment.sport, segment.dport, segment.window, segment.payload_len, int(segment.flags),
        int(segment.outgoing), int(segment.answers), segment.saddr, segment.daddr,
    )  # fmt: skip
