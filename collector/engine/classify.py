"""What a connection's facts mean: how it opened, how it closed, or how it failed.

The probe records observations (``Fact``); the rules that interpret them are the tables below,
kept in one place so the live views, replay and the metrics all read them the same way. Each
table is ordered: the first rule whose facts are all present wins.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from synfin.engine.states import documented
from synfin.records.events import Fact

OPEN_ACTIVE = "active"
OPEN_PASSIVE = "passive"
OPEN_SIMULTANEOUS = "simultaneous"
OPEN_UNKNOWN = "unknown"  # began before synfin was watching
OPEN_NONE = "none"  # connect() deferred (TCP Fast Open) and closed before any SYN left
LISTENER = "listener"

# The result of an open, as `synfin_tcp_connects_total{result}` names it.
RESULT_ESTABLISHED = "established"
RESULT_REFUSED = "refused"
RESULT_TIMEOUT = "timeout"
RESULT_RESET = "reset"
RESULT_OTHER = "other"

INITIATOR_LOCAL = "local"
INITIATOR_REMOTE = "remote"
INITIATOR_SIMULTANEOUS = "simultaneous"

CLOSE_GRACEFUL = "graceful"
CLOSE_HALF_CLOSE = "half_close"
CLOSE_RESET_SENT = "reset_sent"
CLOSE_RESET_RECEIVED = "reset_received"
CLOSE_ABORT = "abort"
CLOSE_TIMEOUT = "timeout"


@dataclass(frozen=True)
class Rule:
    facts: Fact  # all of these must have been seen
    result: str
    initiator: str | None
    close: str | None
    detail: str  # format fields: {reset_state}, {reason}, {retries}


OPEN_RULES: tuple[tuple[Fact, str], ...] = (
    (Fact.LISTENED, LISTENER),
    (Fact.NO_SYN_SENT, OPEN_NONE),
    (Fact.SIMULTANEOUS_OPEN, OPEN_SIMULTANEOUS),
    (Fact.ACTIVE_OPEN, OPEN_ACTIVE),
    (Fact.PASSIVE_OPEN, OPEN_PASSIVE),
    (Fact(0), OPEN_UNKNOWN),
)

# Established connections: who closed first, and how.
CLOSE_RULES: tuple[Rule, ...] = (
    Rule(Fact.RESET_RECEIVED, RESULT_ESTABLISHED, INITIATOR_REMOTE, CLOSE_RESET_RECEIVED,
         "reset by the peer in {reset_state}"),
    Rule(Fact.RESET_SENT_BY_PROCESS, RESULT_ESTABLISHED, INITIATOR_LOCAL, CLOSE_ABORT,
         "aborted by the application in {reset_state}: close with unread data or SO_LINGER 0"
         "{reason}"),
    Rule(Fact.RESET_SENT, RESULT_ESTABLISHED, INITIATOR_LOCAL, CLOSE_RESET_SENT,
         "reset sent in {reset_state}{reason}"),
    Rule(Fact.TIMED_OUT, RESULT_ESTABLISHED, INITIATOR_LOCAL, CLOSE_TIMEOUT,
         "timed out: the peer stopped acknowledging (retransmissions or TCP_USER_TIMEOUT)"),
    Rule(Fact.CLOSING, RESULT_ESTABLISHED, INITIATOR_SIMULTANEOUS, CLOSE_GRACEFUL,
         "both sides closed at once (CLOSING)"),
    Rule(Fact.LOCAL_FIN_FIRST | Fact.HALF_CLOSE, RESULT_ESTABLISHED, INITIATOR_LOCAL,
         CLOSE_HALF_CLOSE, "this side shut down sending first (shutdown), then closed"),
    Rule(Fact.LOCAL_FIN_FIRST, RESULT_ESTABLISHED, INITIATOR_LOCAL, CLOSE_GRACEFUL,
         "this side closed first"),
    Rule(Fact.REMOTE_FIN_FIRST, RESULT_ESTABLISHED, INITIATOR_REMOTE, CLOSE_GRACEFUL,
         "the peer closed first"),
    Rule(Fact.CLOSED, RESULT_ESTABLISHED, None, None, "closed without FIN or RST"),
    Rule(Fact(0), RESULT_ESTABLISHED, None, None, "still open"),
)  # fmt: skip

# Connections that never got established: why the open failed.
FAILED_OPEN_RULES: tuple[Rule, ...] = (
    Rule(Fact.PASSIVE_OPEN | Fact.RESET_RECEIVED, RESULT_RESET, None, None,
         "reset by the peer in SYN-RCVD"),
    Rule(Fact.RESET_RECEIVED, RESULT_REFUSED, None, None,
         "refused: the SYN was answered by a RST ({retries})"),
    Rule(Fact.RESET_SENT, RESULT_RESET, None, None, "reset sent in {reset_state}{reason}"),
    Rule(Fact.CLOSED_BY_PROCESS, RESULT_OTHER, None, None,
         "closed by the application while opening"),
    Rule(Fact.CLOSED, RESULT_TIMEOUT, None, None, "timed out after {retries}"),
    Rule(Fact(0), RESULT_OTHER, None, None, "still opening"),
)  # fmt: skip


@dataclass(frozen=True)
class Classification:
    open: str  # active, passive, simultaneous, unknown, or listener
    result: str  # established, refused, timeout, reset, other
    initiator: str | None = None  # who closed first; None when it never got established
    close: str | None = None  # graceful, half_close, reset_sent, reset_received, abort
    detail: str = ""  # one sentence for people
    syn_retransmits: int = 0  # SYN (active) or SYN-ACK (passive) retransmissions

    def to_dict(self) -> dict[str, object]:
        return {
            "open": self.open,
            "result": self.result,
            "initiator": self.initiator,
            "close": self.close,
            "detail": self.detail,
            "syn_retransmits": self.syn_retransmits,
        }


@dataclass(frozen=True)
class Ending:
    """Everything the rules look at, as recorded by the probe when the socket went away."""

    facts: Fact
    syn_retrans: int = 0
    reset_state: int = 0  # kernel state the (first) reset hit
    reset_reason: str = ""  # the kernel's name for why it sent a reset, where it gives one


def how_opened(facts: Fact) -> str:
    return next(name for needed, name in OPEN_RULES if facts & needed == needed)


@functools.lru_cache(maxsize=4096)
def classify(end: Ending) -> Classification:
    """Classify a socket from what the probe saw of it. (Endings repeat: a busy host's
    thousands of connections a second end in a handful of ways, so verdicts are kept.)"""
    opened = how_opened(end.facts)
    if opened == LISTENER:
        return Classification(LISTENER, RESULT_OTHER, detail="a listening socket")
    if opened == OPEN_NONE:
        detail = "closed before its SYN was sent (TCP Fast Open connect, no data written)"
        return Classification(OPEN_NONE, RESULT_OTHER, detail=detail)
    established = end.facts & Fact.ESTABLISHED or opened == OPEN_UNKNOWN
    rules = CLOSE_RULES if established else FAILED_OPEN_RULES
    rule = next(rule for rule in rules if end.facts & rule.facts == rule.facts)
    detail = rule.detail.format(
        reset_state=documented(end.reset_state).value,
        reason=f" ({end.reset_reason})" if end.reset_reason else "",
        retries=f"{end.syn_retrans} SYN retransmit{'' if end.syn_retrans == 1 else 's'}",
    )
    return Classification(opened, rule.result, rule.initiator, rule.close, detail, end.syn_retrans)


def facts_the_rules_read() -> Fact:
    """Every fact some rule looks at: the probe counts endings by these bits only."""
    mask = Fact.ESTABLISHED
    for needed, _name in OPEN_RULES:
        mask |= needed
    for rule in (*CLOSE_RULES, *FAILED_OPEN_RULES):
        mask |= rule.facts
    return mask
