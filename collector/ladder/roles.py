"""Which segment of a connection plays which part in the textbook's diagram, and its label.

The seed documents name the numbers: the initiator's SYN carries ``seq=x``, the answer
``seq=y ack=x+1``, the third segment ``seq=x+1 ack=y+1``; the first closer's FIN ``seq=u``,
the other end's ACK ``seq=v ack=u+1`` and FIN ``seq=w ack=u+1``, the last ACK
``seq=u+1 ack=w+1``. Here each captured segment is given its part by what it is and what it
acknowledges, and its label from that part. Whether the real numbers obey the labels is for
collector/ladder/rules.py to check, not assumed here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from synfin.ladder.dialogue import Dialogue, End
from synfin.records.segments import Flag, Segment, covers


class Role(enum.Enum):
    SYN = "SYN"
    SYN_ACK = "SYN+ACK"
    HANDSHAKE_ACK = "handshake ACK"
    FIRST_FIN = "first FIN"
    FIRST_FIN_ACK = "ACK of the first FIN"
    SECOND_FIN = "second FIN"
    SECOND_FIN_ACK = "ACK of the second FIN"
    RESET = "RST"
    RETRANSMISSION = "retransmission"
    OTHER = "other"


# The textbook label of each part, written with the connection's own symbols.
LABELS: dict[Role, tuple[str | None, str | None]] = {
    Role.SYN: ("x", None),
    Role.SYN_ACK: ("y", "x+1"),
    Role.HANDSHAKE_ACK: ("x+1", "y+1"),
    Role.FIRST_FIN: ("u", None),
    Role.FIRST_FIN_ACK: ("v", "u+1"),
    Role.SECOND_FIN: ("w", "u+1"),
    Role.SECOND_FIN_ACK: ("u+1", "w+1"),
}


@dataclass(frozen=True)
class Part:
    """A segment with its part in the diagram and its textbook label."""

    segment: Segment
    role: Role
    label: str
    sender: End
    repeats: Role | None = None  # a retransmission: the part of the segment it resends

    def plays(self, roles: frozenset[Role]) -> bool:
        """True if this segment, or the one it resends, has one of these parts."""
        return self.role in roles or self.repeats in roles


@dataclass(frozen=True)
class Symbols:
    """The numbers the labels stand for, as this connection chose them (None: not seen)."""

    x: int | None = None
    y: int | None = None
    u: int | None = None
    v: int | None = None
    w: int | None = None
    closer: End | None = None  # the end that sent the first FIN
    simultaneous_close: bool = False  # each end sent its FIN before the other's arrived


# A simultaneous close has no v: each end's ACK follows its own FIN.
SIMULTANEOUS_CLOSE_LABELS: dict[Role, tuple[str | None, str | None]] = {
    Role.SECOND_FIN: ("w", None),
    Role.FIRST_FIN_ACK: ("w+1", "u+1"),
    Role.SECOND_FIN_ACK: ("u+1", "w+1"),
}


def _relative(value: int, base: int | None, name: str) -> str:
    if base is None:
        return str(value)
    offset = (value - base) & 0xFFFFFFFF
    return name if offset == 0 else f"{name}+{offset}" if offset < 0x80000000 else str(value)


@dataclass
class _Progress:
    """What the walk through the segments has found so far (indices into the segments)."""

    x: int | None = None
    y: int | None = None
    u: int | None = None
    v: int | None = None
    w: int | None = None
    closer: End | None = None
    handshake_ack: int | None = None
    second_fin: int | None = None
    first_fin_ack: int | None = None
    second_fin_ack: int | None = None

    def role_of(self, index: int, seg: Segment, sender: End, from_initiator: bool) -> Role:
        if seg.has(Flag.RST):
            return Role.RESET
        if seg.has(Flag.SYN):
            return self._syn(seg, from_initiator)
        if seg.has(Flag.FIN):
            return self._fin(index, seg, sender)
        if seg.has(Flag.ACK):
            return self._ack(index, seg, sender, from_initiator)
        return Role.OTHER

    def _syn(self, seg: Segment, from_initiator: bool) -> Role:
        if not seg.has(Flag.ACK) and self.x is None and from_initiator:
            self.x = seg.seq
            return Role.SYN
        if seg.has(Flag.ACK) and self.y is None and not from_initiator:
            self.y = seg.seq
            return Role.SYN_ACK
        return Role.RETRANSMISSION

    def _ack(self, index: int, seg: Segment, sender: End, from_initiator: bool) -> Role:
        if (
            from_initiator
            and self.y is not None
            and self.handshake_ack is None
            and covers(seg.ack, self.y + 1)
        ):
            self.handshake_ack = index
            return Role.HANDSHAKE_ACK
        if self._acks_first_fin(index, seg, sender):
            self.v = seg.seq
            return Role.FIRST_FIN_ACK
        if (
            self.w is not None
            and sender is self.closer
            and self.second_fin_ack is None
            and covers(seg.ack, self.w + 1)
        ):
            self.second_fin_ack = index
            return Role.SECOND_FIN_ACK
        return Role.OTHER

    def _fin(self, index: int, seg: Segment, sender: End) -> Role:
        # The FIN takes the sequence number after any data it carries.
        if self.closer is None:
            self.closer, self.u = sender, seg.seq + seg.payload_len
            return Role.FIRST_FIN
        if sender is not self.closer and self.w is None:
            self.w, self.second_fin = seg.seq + seg.payload_len, index
            self._acks_first_fin(index, seg, sender)  # FIN and ACK in one segment
            return Role.SECOND_FIN
        return Role.RETRANSMISSION

    def _acks_first_fin(self, index: int, seg: Segment, sender: End) -> bool:
        if (
            self.u is not None
            and sender is not self.closer
            and self.first_fin_ack is None
            and seg.has(Flag.ACK)
            and covers(seg.ack, self.u + 1)
        ):
            self.first_fin_ack = index
            return True
        return False

    @property
    def simultaneous_close(self) -> bool:
        """The second FIN left before the first one was acknowledged: the FINs crossed."""
        return (
            self.second_fin is not None
            and self.first_fin_ack is not None
            and self.second_fin < self.first_fin_ack
        )


def assign(dialogue: Dialogue) -> tuple[list[Part], Symbols]:
    """Every segment of ``dialogue`` with its part and label, in time order."""
    initiator = dialogue.initiator
    segments = sorted(dialogue.segments, key=lambda s: s.ts_ns)
    progress = _Progress()
    roles = [
        progress.role_of(index, seg, dialogue.end_of(seg), initiator.sent(seg))
        for index, seg in enumerate(segments)
    ]
    p = progress
    symbols = Symbols(p.x, p.y, p.u, p.v, p.w, p.closer, p.simultaneous_close)
    parts: list[Part] = []
    for seg, found in zip(segments, roles, strict=True):
        role, text, repeats = found, label(seg, found, symbols, initiator), None
        if role in (Role.RETRANSMISSION, Role.OTHER):
            # A resent SYN, FIN or ACK keeps the part and label of the first copy: it is the
            # same segment (the first copy may have been lost).
            first = next((p for p in parts if _same_segment(p.segment, seg)), None)
            if first is not None and first.role is not Role.OTHER:
                role, text, repeats = Role.RETRANSMISSION, first.label, first.repeats or first.role
        parts.append(Part(seg, role, text, dialogue.end_of(seg), repeats))
    return parts, symbols


def _same_segment(earlier: Segment, later: Segment) -> bool:
    control = Flag.SYN | Flag.FIN | Flag.RST
    if earlier.flow != later.flow or earlier.seq != later.seq:
        return False
    if earlier.flags & control != later.flags & control:
        return False
    # A SYN or FIN resent may acknowledge more than the first copy did; a bare ACK may not.
    return bool(later.flags & control) or earlier.ack == later.ack


def label(segment: Segment, role: Role, symbols: Symbols, initiator: End) -> str:
    """``seq=y ack=x+1`` for the part, or the numbers relative to each end's first one."""
    table = {**LABELS, **SIMULTANEOUS_CLOSE_LABELS} if symbols.simultaneous_close else LABELS
    textbook = table.get(role)
    if textbook is not None:
        seq_text, ack_text = textbook
    else:
        from_initiator = initiator.sent(segment)
        own, own_name = (symbols.x, "x") if from_initiator else (symbols.y, "y")
        peer, peer_name = (symbols.y, "y") if from_initiator else (symbols.x, "x")
        seq_text = _relative(segment.seq, own, own_name)
        ack_text = _relative(segment.ack, peer, peer_name) if segment.has(Flag.ACK) else None
    text = f"seq={seq_text}"
    if ack_text is not None:
        text += f" ack={ack_text}"
    return text
