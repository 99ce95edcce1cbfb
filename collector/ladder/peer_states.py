"""An end's documented states inferred from its segments, for an end not on this host.

When the other end of a connection is remote, its kernel's events are out of sight, but the
textbook says what a TCP does on each segment it sends or receives. This table is that
rule book; the ladder marks every state it yields as inferred from segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from synfin.engine.states import State
from synfin.ladder.dialogue import End
from synfin.ladder.roles import Part, Role

Direction = Literal["sent", "received"]
# A FIN that also acknowledges the first FIN (the teardown's FIN+ACK) moves FIN-WAIT-1 on to
# TIME-WAIT; one that does not (the FINs crossed) to CLOSING.
FIN_WITH_ACK = "FIN with the ACK of the first FIN"

S = State
TRANSITIONS: dict[tuple[State, Direction, Role | str], State] = {
    (S.CLOSED, "sent", Role.SYN): S.SYN_SENT,
    (S.LISTEN, "received", Role.SYN): S.SYN_RCVD,
    (S.SYN_SENT, "received", Role.SYN_ACK): S.ESTABLISHED,
    (S.SYN_RCVD, "received", Role.HANDSHAKE_ACK): S.ESTABLISHED,
    (S.ESTABLISHED, "sent", Role.FIRST_FIN): S.FIN_WAIT_1,
    (S.ESTABLISHED, "received", Role.FIRST_FIN): S.CLOSE_WAIT,
    (S.ESTABLISHED, "sent", Role.SECOND_FIN): S.FIN_WAIT_1,  # the FINs crossed
    (S.FIN_WAIT_1, "received", Role.FIRST_FIN): S.CLOSING,
    (S.FIN_WAIT_1, "received", Role.FIRST_FIN_ACK): S.FIN_WAIT_2,
    (S.FIN_WAIT_1, "received", Role.SECOND_FIN): S.CLOSING,
    (S.FIN_WAIT_1, "received", FIN_WITH_ACK): S.TIME_WAIT,
    (S.FIN_WAIT_2, "received", Role.SECOND_FIN): S.TIME_WAIT,
    (S.FIN_WAIT_2, "received", FIN_WITH_ACK): S.TIME_WAIT,
    (S.CLOSE_WAIT, "sent", Role.SECOND_FIN): S.LAST_ACK,
    (S.CLOSE_WAIT, "sent", FIN_WITH_ACK): S.LAST_ACK,
    (S.CLOSING, "received", Role.FIRST_FIN_ACK): S.TIME_WAIT,
    (S.CLOSING, "received", Role.SECOND_FIN_ACK): S.TIME_WAIT,
    (S.LAST_ACK, "received", Role.SECOND_FIN_ACK): S.CLOSED,
}


@dataclass(frozen=True)
class Inferred:
    index: int  # the part (segment) the change belongs to
    source: State
    target: State


def _kind(part: Part, fin_acked_by_second: bool) -> Role | str:
    if part.role is Role.SECOND_FIN and fin_acked_by_second:
        return FIN_WITH_ACK
    return part.role


def infer(
    parts: list[Part], end: End, initial: State, second_fin_acks_first: bool
) -> list[Inferred]:
    """The states ``end`` went through, by the textbook, given the segments it sent and got."""
    state = initial
    changes: list[Inferred] = []
    for index, part in enumerate(parts):
        direction: Direction = "sent" if part.sender is end else "received"
        if part.role is Role.RESET:
            target: State | None = State.CLOSED
        else:
            target = TRANSITIONS.get((state, direction, _kind(part, second_fin_acks_first)))
        if target is not None and target is not state:
            changes.append(Inferred(index, state, target))
            state = target
    return changes
