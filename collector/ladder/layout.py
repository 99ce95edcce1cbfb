"""The ladder diagram of one connection, laid out once for every output format.

Rows go down in time. A row is a segment (an arrow between the two columns) or, when a state
changed with no segment to pin it to (TIME-WAIT running out, a SYN timing out), that change
alone. Each end's state is written on the row of the segment that made it change: the
segment the end sent right after (connect sends the SYN, close the FIN) or the one it had just
received. Text, JSON and SVG all render this one layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synfin.engine.connection import Step
from synfin.engine.states import State
from synfin.ladder.dialogue import Dialogue, End
from synfin.ladder.peer_states import infer
from synfin.ladder.roles import Part, Role, Symbols, assign
from synfin.ladder.rules import Check, Evidence, check_all

# Which segment makes an end enter a state: one it sends right after (connect sends the SYN,
# close the FIN, an abort the RST) or one it has just received. A state with neither (TIME-WAIT
# running out, a SYN timing out) gets a row of its own.
R = Role
CAUSE_SENT: dict[State, frozenset[Role]] = {
    State.SYN_SENT: frozenset({R.SYN}),
    State.FIN_WAIT_1: frozenset({R.FIRST_FIN, R.SECOND_FIN}),
    State.LAST_ACK: frozenset({R.FIRST_FIN, R.SECOND_FIN}),
    State.CLOSED: frozenset({R.RESET}),
}
CAUSE_RECEIVED: dict[State, frozenset[Role]] = {
    State.SYN_RCVD: frozenset({R.SYN}),
    State.ESTABLISHED: frozenset({R.SYN_ACK, R.HANDSHAKE_ACK}),
    State.CLOSE_WAIT: frozenset({R.FIRST_FIN, R.SECOND_FIN}),
    State.CLOSING: frozenset({R.FIRST_FIN, R.SECOND_FIN}),
    State.FIN_WAIT_2: frozenset({R.FIRST_FIN_ACK, R.SECOND_FIN_ACK, R.SECOND_FIN}),
    State.TIME_WAIT: frozenset({R.FIRST_FIN, R.SECOND_FIN, R.FIRST_FIN_ACK, R.SECOND_FIN_ACK}),
    State.CLOSED: frozenset({R.FIRST_FIN_ACK, R.SECOND_FIN_ACK, R.RESET}),
}
# A segment is captured as it arrives, but TCP may handle it later (the socket's backlog
# while its owner holds the lock), and a step synfin infers may be dated a little before the
# segment it goes with.
CAUSE_WINDOW_NS = 1_000_000_000
CLOCK_SKEW_NS = 1_000_000

OBSERVED = "observed"  # the kernel's own event
INFERRED = "inferred"  # synfin's lifecycle engine inferred it from other kernel evidence
FROM_SEGMENTS = "from segments"  # the end is not on this host: the textbook's rule book


@dataclass(frozen=True)
class Mark:
    """An end entering a state."""

    state: State
    at_ns: int | None
    evidence: str  # OBSERVED, INFERRED or FROM_SEGMENTS
    how: str = ""


@dataclass
class Row:
    at_ns: int
    part: Part | None = None  # None: a state change with no segment
    marks: tuple[list[Mark], list[Mark]] = field(default_factory=lambda: ([], []))


@dataclass
class Ladder:
    dialogue: Dialogue
    parts: list[Part]
    symbols: Symbols
    checks: list[Check]
    initial: tuple[Mark | None, Mark | None]  # each end's state before the first row
    rows: list[Row]

    @property
    def start_ns(self) -> int:
        return self.rows[0].at_ns if self.rows else self.dialogue.start_ns

    def column(self, end: End) -> int:
        return 0 if end is self.dialogue.initiator else 1


def build(dialogue: Dialogue) -> Ladder:
    parts, symbols = assign(dialogue)
    checks = check_all(Evidence(dialogue, parts, symbols))
    rows = [Row(part.segment.ts_ns, part) for part in parts]
    initial: list[Mark | None] = [None, None]
    for column, end in enumerate(dialogue.ends):
        if end.kernel is not None:
            initial[column] = _place_observed(rows, end, column, end.kernel.steps)
        else:
            initial[column] = _place_inferred(rows, parts, end, column, dialogue, symbols)
    rows.sort(key=lambda row: row.at_ns)
    return Ladder(dialogue, parts, symbols, checks, (initial[0], initial[1]), rows)


def _place_observed(rows: list[Row], end: End, column: int, steps: list[Step]) -> Mark | None:
    ordered = sorted((s for s in steps if s.at_ns is not None), key=lambda s: s.at_ns or 0) + [
        s for s in steps if s.at_ns is None
    ]
    if not ordered:
        return None
    first = ordered[0]
    initial = Mark(first.source, None, OBSERVED)
    previous: Row | None = None
    for step in ordered:
        if step.source is step.target:
            continue  # close() after shutdown(): the kernel sets FIN_WAIT1 again
        mark = Mark(step.target, step.at_ns, OBSERVED if step.observed else INFERRED, step.how)
        row = _row_for(rows, end, step) if step.at_ns is not None else None
        if row is not None and previous is not None and _earlier(rows, row, previous):
            # On loopback a segment is captured as it arrives, after its sender moved on: an
            # end's states must still read down in the order it took them.
            row = previous
        if row is None:
            at = step.at_ns if step.at_ns is not None else (rows[-1].at_ns if rows else 0)
            row = Row(at)
            rows.append(row)
        row.marks[column].append(mark)
        previous = row
    return initial


def _earlier(rows: list[Row], row: Row, other: Row) -> bool:
    def position(wanted: Row) -> tuple[int, int]:
        return wanted.at_ns, next(i for i, r in enumerate(rows) if r is wanted)

    return position(row) < position(other)


def _row_for(rows: list[Row], end: End, step: Step) -> Row | None:
    """The row of the segment that made ``end`` take this step, if there is one."""
    at = step.at_ns or 0
    if step.source is State.TIME_WAIT:
        return None  # the 2MSL timer, or the timewait socket killed
    own = [r for r in rows if r.part is not None and r.part.sender is end]
    theirs = [r for r in rows if r.part is not None and r.part.sender is not end]

    def sent(roles: frozenset[Role]) -> Row | None:
        return next(
            (
                r
                for r in own
                if r.part is not None
                and r.part.plays(roles)
                and -CLOCK_SKEW_NS <= r.at_ns - at <= CAUSE_WINDOW_NS
            ),
            None,
        )

    def received(roles: frozenset[Role]) -> Row | None:
        found = [
            r
            for r in theirs
            if r.part is not None
            and r.part.plays(roles)
            and -CLOCK_SKEW_NS <= at - r.at_ns <= CAUSE_WINDOW_NS
        ]
        return found[-1] if found else None

    empty: frozenset[Role] = frozenset()
    by_receiving = received(CAUSE_RECEIVED.get(step.target, empty))
    by_sending = sent(CAUSE_SENT.get(step.target, empty))
    if step.target in CAUSE_SENT and step.target is not State.CLOSED:
        return by_sending or by_receiving
    return by_receiving or by_sending


def _place_inferred(
    rows: list[Row],
    parts: list[Part],
    end: End,
    column: int,
    dialogue: Dialogue,
    symbols: Symbols,
) -> Mark | None:
    if not parts:
        return None
    if not dialogue.handshake_seen:
        return None  # where it started is unknown, so is every state after
    start = _inferred_start(parts, end, dialogue)
    if start is None:
        return None
    second_fin = next((p for p in parts if p.role is Role.SECOND_FIN), None)
    fin_with_ack = (
        second_fin is not None
        and symbols.u is not None
        and second_fin.segment.ack == (symbols.u + 1) & 0xFFFFFFFF
    )
    for change in infer(parts, end, start, fin_with_ack):
        rows[change.index].marks[column].append(
            Mark(change.target, parts[change.index].segment.ts_ns, FROM_SEGMENTS)
        )
    return Mark(start, None, FROM_SEGMENTS)


def _inferred_start(parts: list[Part], end: End, dialogue: Dialogue) -> State | None:
    """Where the textbook has an end begin: the initiator CLOSED; the other end LISTEN if
    it answered the SYN with SYN+ACK, CLOSED (no listener) if with RST, else unknown."""
    if end is dialogue.initiator:
        return State.CLOSED
    answers = [p.role for p in parts if p.sender is end and p.role in (Role.SYN_ACK, Role.RESET)]
    if not answers:
        return None
    return State.LISTEN if answers[0] is Role.SYN_ACK else State.CLOSED


EVIDENCE_NOTES = {
    INFERRED: "~ inferred by synfin from other kernel events",
    FROM_SEGMENTS: "* inferred from segments (the end is not on this host)",
}


def legend(ladder: Ladder) -> str:
    """What the marks after state names mean, for the ones this ladder uses."""
    used = {mark.evidence for row in ladder.rows for marks in row.marks for mark in marks}
    return "; ".join(note for evidence, note in EVIDENCE_NOTES.items() if evidence in used)
