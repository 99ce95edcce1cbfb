"""An end's documented states inferred from its segments, for an end not on this host.

When the other end of a connection is remote, its kernel's events are out of sight, but the
textbook says what a TCP does on each segment it sends or receives: the triggers of the state
diagram in collector/engine/states.py. The ladder marks every state it yields as inferred from
segments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from synfin.engine.states import NEXT_STATE, By, State, TextbookSegment, Trigger
from synfin.ladder.dialogue import End
from synfin.ladder.roles import Part, Role

Direction = Literal["sent", "received"]
_BY: Mapping[Direction, By] = MappingProxyType({"sent": By.SENT, "received": By.RECEIVED})

# The diagram's segment each part is. Which FIN came first, and which ACK answers which FIN, is
# the ladder's bookkeeping; the diagram only asks whether a FIN also acknowledges the other one
# (see textbook_segment). A retransmission repeats a step already taken and other segments
# (data, window updates) move no state, so neither is here.
T = TextbookSegment
SEGMENT_OF_ROLE: Mapping[Role, TextbookSegment] = MappingProxyType(
    {
        Role.SYN: T.SYN,
        Role.SYN_ACK: T.SYN_ACK,
        Role.HANDSHAKE_ACK: T.ACK_OF_SYN,
        Role.FIRST_FIN: T.FIN,
        Role.FIRST_FIN_ACK: T.ACK_OF_FIN,
        Role.SECOND_FIN: T.FIN,
        Role.SECOND_FIN_ACK: T.ACK_OF_FIN,
        Role.RESET: T.RST,
    }
)

# The diagram's arrows that segments on the wire can show, by (state, direction, segment).
TRANSITIONS: Mapping[tuple[State, Direction, TextbookSegment], State] = MappingProxyType(
    {
        (source, direction, trigger.what): target
        for (source, trigger), target in NEXT_STATE.items()
        for direction, by in _BY.items()
        if trigger.by is by and isinstance(trigger.what, TextbookSegment)
    }
)


@dataclass(frozen=True)
class Inferred:
    index: int  # the part (segment) the change belongs to
    source: State
    target: State


def textbook_segment(part: Part, second_fin_acks_first: bool) -> TextbookSegment | None:
    """The diagram's segment ``part`` is, or None for one that moves no state."""
    if part.role is Role.SECOND_FIN and second_fin_acks_first:
        return T.FIN_ACK
    return SEGMENT_OF_ROLE.get(part.role)


def infer(
    parts: list[Part], end: End, initial: State, second_fin_acks_first: bool
) -> list[Inferred]:
    """The states ``end`` went through, by the textbook, given the segments it sent and got."""
    state = initial
    changes: list[Inferred] = []
    for index, part in enumerate(parts):
        segment = textbook_segment(part, second_fin_acks_first)
        if segment is None:
            continue
        by = By.SENT if part.sender is end else By.RECEIVED
        target = NEXT_STATE.get((state, Trigger(by, segment)))
        if target is not None and target is not state:
            changes.append(Inferred(index, state, target))
            state = target
    return changes
