"""The documented rules, checked against one real connection.

The seed documents state them: the SYN and the FIN each take one sequence number
(ack = seq + 1); the handshake takes three segments; the teardown four (three when the ACK
rides on the FIN; a simultaneous close goes through CLOSING); the active closer waits 2MSL in
TIME-WAIT. Each check says whether the connection obeyed, names the deviation when it did not,
and says so when trace did not see enough to tell.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from synfin.engine.connection import Step
from synfin.engine.lifecycle import TIMEWAIT_LEN_NS
from synfin.engine.states import State
from synfin.ladder.dialogue import Dialogue, End
from synfin.ladder.roles import Part, Role, Symbols
from synfin.units import format_duration

# Linux's timer wheel fires a 60 s timer up to 1/8 late (its coarsest level's granularity).
TIMEWAIT_SLACK = 0.125


class Verdict(enum.Enum):
    HOLDS = "holds"
    DEVIATION = "deviation"
    NOT_SEEN = "not seen"


@dataclass(frozen=True)
class Check:
    rule: str
    verdict: Verdict
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "verdict": self.verdict.value, "detail": self.detail}


@dataclass(frozen=True)
class Evidence:
    """What the checks read: the dialogue, its segments' parts and its symbols."""

    dialogue: Dialogue
    parts: list[Part]
    symbols: Symbols

    def with_role(self, role: Role) -> list[Part]:
        return [part for part in self.parts if part.role is role]

    def one(self, role: Role) -> Part | None:
        found = self.with_role(role)
        return found[0] if found else None

    def name(self, end: End) -> str:
        return "client" if end is self.dialogue.initiator else "server"


def _plus_one(what: str, value: int, base: int) -> str:
    return f"{what}={value} = {base} + 1"


SYN_RULE = "SYN takes one sequence number"
HANDSHAKE_RULE = "three-way handshake"
FIN_RULE = "FIN takes one sequence number"
TEARDOWN_RULE = "four-way teardown"
TIME_WAIT_RULE = "TIME-WAIT lasts 2MSL"


def check_syn_numbers(evidence: Evidence) -> Check:
    syn, syn_ack = evidence.one(Role.SYN), evidence.one(Role.SYN_ACK)
    third = evidence.one(Role.HANDSHAKE_ACK)
    if syn is None or syn_ack is None or third is None:
        return Check(SYN_RULE, Verdict.NOT_SEEN, "the three handshake segments were not all seen")
    x, y = syn.segment.seq, syn_ack.segment.seq
    problems = []
    if syn.segment.payload_len:
        problems.append(f"data on the SYN ({syn.segment.payload_len} bytes)")
    if syn_ack.segment.ack != (x + 1) & 0xFFFFFFFF:
        problems.append(f"the SYN+ACK acknowledged {syn_ack.segment.ack}, not x+1 = {x + 1}")
    if third.segment.ack != (y + 1) & 0xFFFFFFFF:
        problems.append(f"the third segment acknowledged {third.segment.ack}, not y+1 = {y + 1}")
    if third.segment.seq != (x + 1) & 0xFFFFFFFF:
        problems.append(f"the third segment had seq={third.segment.seq}, not x+1 = {x + 1}")
    if problems:
        return Check(SYN_RULE, Verdict.DEVIATION, "; ".join(problems))
    detail = f"{_plus_one('ack', syn_ack.segment.ack, x)}; {_plus_one('ack', third.segment.ack, y)}"
    return Check(SYN_RULE, Verdict.HOLDS, detail)


def check_handshake(evidence: Evidence) -> Check:
    dialogue = evidence.dialogue
    if not dialogue.handshake_seen:
        return Check(HANDSHAKE_RULE, Verdict.NOT_SEEN, "opened before trace started")
    syn = evidence.one(Role.SYN)
    syns = [
        p for p in evidence.parts if p.segment.flag_names == "SYN" and p.sender is syn.sender
    ] if syn else []  # fmt: skip
    syn_acks = [p for p in evidence.parts if p.segment.flag_names == "SYN+ACK"]
    third = evidence.one(Role.HANDSHAKE_ACK)
    problems = []
    if len(syns) > 1:
        gap = format_duration(syns[1].segment.ts_ns - syns[0].segment.ts_ns)
        problems.append(f"SYN sent {len(syns)} times (first retransmission after {gap})")
    if len(syn_acks) > 1:
        problems.append(f"SYN+ACK sent {len(syn_acks)} times")
    resets = evidence.with_role(Role.RESET)
    if not syn_acks and resets:
        problems.append(f"refused: the {evidence.name(resets[0].sender)} answered with RST")
    elif not syn_acks:
        if dialogue.stopped_early:
            return Check(HANDSHAKE_RULE, Verdict.NOT_SEEN, "stopped before the SYN was answered")
        problems.append("no answer to the SYN: the connect timed out")
    elif third is None:
        if dialogue.stopped_early and not resets:
            return Check(HANDSHAKE_RULE, Verdict.NOT_SEEN, "stopped before the third segment")
        problems.append("no third segment (ACK) after the SYN+ACK")
    if problems:
        return Check(HANDSHAKE_RULE, Verdict.DEVIATION, "; ".join(problems))
    assert syn is not None and third is not None
    took = format_duration(third.segment.ts_ns - syn.segment.ts_ns)
    return Check(HANDSHAKE_RULE, Verdict.HOLDS, f"SYN, SYN+ACK, ACK in {took}")


def check_fin_numbers(evidence: Evidence) -> Check:
    symbols = evidence.symbols
    first_fin, second_fin = evidence.one(Role.FIRST_FIN), evidence.one(Role.SECOND_FIN)
    if first_fin is None:
        return Check(FIN_RULE, Verdict.NOT_SEEN, "no FIN seen")
    answers = [
        (symbols.u, "u", _answer_to_first_fin(evidence)),
        (symbols.w, "w", evidence.one(Role.SECOND_FIN_ACK)),
    ]
    shown, problems = [], []
    for base, name, answer in answers:
        if base is None or answer is None:
            continue
        if answer.segment.ack == (base + 1) & 0xFFFFFFFF:
            shown.append(_plus_one("ack", answer.segment.ack, base))
        else:
            problems.append(f"the FIN seq={name} was acknowledged with {answer.segment.ack}")
    if problems:
        return Check(FIN_RULE, Verdict.DEVIATION, "; ".join(problems))
    if len(shown) < (2 if second_fin is not None else 1) or not shown:
        return Check(FIN_RULE, Verdict.NOT_SEEN, "not every FIN was seen acknowledged")
    return Check(FIN_RULE, Verdict.HOLDS, "; ".join(shown))


def _answer_to_first_fin(evidence: Evidence) -> Part | None:
    separate = evidence.one(Role.FIRST_FIN_ACK)
    if separate is not None:
        return separate
    second_fin = evidence.one(Role.SECOND_FIN)
    u = evidence.symbols.u
    if second_fin is not None and u is not None and second_fin.segment.ack == (u + 1) & 0xFFFFFFFF:
        return second_fin  # FIN+ACK: the ACK rode on the other end's FIN
    return None


def check_teardown(evidence: Evidence) -> Check:
    resets = evidence.with_role(Role.RESET)
    first_fin = evidence.one(Role.FIRST_FIN)
    if resets:
        sender = evidence.name(resets[0].sender)
        if evidence.one(Role.SYN_ACK) is None:
            return Check(TEARDOWN_RULE, Verdict.DEVIATION, f"no connection: {sender} sent RST")
        after = "after a FIN" if first_fin is not None else "instead of a FIN"
        return Check(TEARDOWN_RULE, Verdict.DEVIATION, f"aborted: the {sender} sent RST {after}")
    parts = [
        evidence.one(role)
        for role in (Role.FIRST_FIN, Role.FIRST_FIN_ACK, Role.SECOND_FIN, Role.SECOND_FIN_ACK)
    ]
    fin_retransmits = [
        p for p in evidence.with_role(Role.RETRANSMISSION) if p.segment.flag_names.startswith("FIN")
    ]
    first, first_ack, second, second_ack = parts
    if (
        first is None
        or second is None
        or second_ack is None
        or _answer_to_first_fin(evidence) is None
    ):
        if evidence.dialogue.stopped_early or evidence.one(Role.SYN_ACK) is None:
            return Check(TEARDOWN_RULE, Verdict.NOT_SEEN, "stopped before the teardown ended")
        return Check(TEARDOWN_RULE, Verdict.DEVIATION, "the teardown's segments were not all seen")
    closer = evidence.name(first.sender)
    if evidence.symbols.simultaneous_close:
        closing = _went_through_closing(evidence.dialogue)
        detail = "simultaneous close: the FINs crossed, then each was acknowledged"
        detail += f" ({closing})" if closing else ""
        verdict = Verdict.HOLDS
    elif first_ack is None:
        detail = f"three segments ({closer} first): the ACK of its FIN rode on the other FIN"
        verdict = Verdict.HOLDS
    else:
        detail = f"four segments ({closer} first): FIN, ACK, FIN, ACK"
        verdict = Verdict.HOLDS
    if fin_retransmits:
        verdict = Verdict.DEVIATION
        detail += f"; FIN retransmitted {len(fin_retransmits)} time(s)"
    return Check(TEARDOWN_RULE, verdict, detail)


def _went_through_closing(dialogue: Dialogue) -> str:
    ends = [end for end in dialogue.ends if end.kernel is not None]
    through = [
        end
        for end in ends
        if any(s.target is State.CLOSING for s in end.kernel.steps)  # type: ignore[union-attr]
    ]
    if not ends:
        return ""
    return f"{len(through)} of {len(ends)} local end(s) went through CLOSING"


def check_time_wait(evidence: Evidence) -> Check:
    for end in evidence.dialogue.ends:
        steps = end.kernel.steps if end.kernel is not None else []
        if any(s.target is State.TIME_WAIT for s in steps):
            return _time_wait_of(evidence.name(end), steps)
    if evidence.with_role(Role.RESET):
        reason = "reset: no end entered TIME-WAIT"
    elif not any(end.kernel for end in evidence.dialogue.ends):
        reason = "neither end is on this host"
    else:
        reason = "no end on this host entered TIME-WAIT"
    return Check(TIME_WAIT_RULE, Verdict.NOT_SEEN, reason)


def _time_wait_of(who: str, steps: list[Step]) -> Check:
    ended = [s for s in steps if s.source is State.TIME_WAIT and s.target is State.CLOSED]
    two_msl = f"{TIMEWAIT_LEN_NS // 10**9} s"
    if not ended:
        detail = (
            f"the {who} is in TIME-WAIT; Linux holds it {two_msl} (2MSL) and trace stopped "
            "first (`synfin trace --time-wait wait` sees it end)"
        )
        return Check(TIME_WAIT_RULE, Verdict.NOT_SEEN, detail)
    lasted, how = ended[0].duration_ns, ended[0].how
    if lasted is None:
        return Check(TIME_WAIT_RULE, Verdict.NOT_SEEN, f"the {who}'s TIME-WAIT began unseen")
    if not how.startswith("2MSL"):
        detail = f"the {who}'s TIME-WAIT ended after {format_duration(lasted)}: {how}"
        return Check(TIME_WAIT_RULE, Verdict.DEVIATION, detail)
    within = TIMEWAIT_LEN_NS <= lasted <= TIMEWAIT_LEN_NS * (1 + TIMEWAIT_SLACK) + 10**9
    detail = f"the {who} stayed {format_duration(lasted)} in TIME-WAIT (2MSL = {two_msl} on Linux)"
    return Check(TIME_WAIT_RULE, Verdict.HOLDS if within else Verdict.DEVIATION, detail)


RULES: tuple[Callable[[Evidence], Check], ...] = (
    check_handshake,
    check_syn_numbers,
    check_teardown,
    check_fin_numbers,
    check_time_wait,
)


def check_all(evidence: Evidence) -> list[Check]:
    return [rule(evidence) for rule in RULES]
