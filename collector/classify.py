"""What a connection's facts mean: how it opened, how it closed, or how it failed.

The probe records observations (``Fact``); the rules that interpret them live here, once, and
serve the live views, replay, and (through the kernel's counts per fact signature) the metrics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from collector.events import Fact
from collector.states import KernelState, documented

OPEN_ACTIVE = "active"
OPEN_PASSIVE = "passive"
OPEN_SIMULTANEOUS = "simultaneous"
OPEN_UNKNOWN = "unknown"  # began before synfin was watching
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


@dataclass(frozen=True)
class Classification:
    open: str  # active, passive, simultaneous, unknown, or listener
    result: str  # established, refused, timeout, reset, other
    initiator: str | None = None  # who closed first; None when it never got established
    close: str | None = None  # graceful, half_close, reset_sent, reset_received, abort
    detail: str = ""  # one sentence for people
    syn_retransmits: int = 0  # SYN (active) or SYN-ACK (passive) retransmissions

    def to_dict(self) -> dict[str, str | None]:
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
    last_state: int  # kernel state at the end
    syn_retrans: int = 0
    reset_state: int = 0  # kernel state the (first) reset hit
    reset_reason: str = ""  # the kernel's name for why it sent a reset, where it gives one


def _opened(facts: Fact) -> str:
    if facts & Fact.SIMULTANEOUS_OPEN:
        return OPEN_SIMULTANEOUS
    if facts & Fact.ACTIVE_OPEN:
        return OPEN_ACTIVE
    if facts & Fact.PASSIVE_OPEN:
        return OPEN_PASSIVE
    return OPEN_UNKNOWN


def _state(value: int) -> str:
    return documented(value).value


def _failed_open(opened: str, end: Ending) -> Classification:
    facts = end.facts
    retries = f"{end.syn_retrans} SYN retransmit{'s' if end.syn_retrans != 1 else ''}"
    if facts & Fact.RESET_RECEIVED:
        if opened == OPEN_PASSIVE:
            return Classification(opened, RESULT_RESET, detail="reset by the peer in SYN-RCVD")
        return Classification(
            opened, RESULT_REFUSED, detail=f"refused: the SYN was answered by a RST ({retries})"
        )
    if facts & Fact.RESET_SENT:
        return Classification(
            opened, RESULT_RESET, detail=f"reset sent in {_state(end.reset_state)}"
        )
    if facts & Fact.CLOSED_BY_PROCESS:
        return Classification(
            opened, RESULT_OTHER, detail="closed by the application while opening"
        )
    if end.last_state in (KernelState.SYN_SENT, KernelState.SYN_RECV, KernelState.CLOSE):
        return Classification(opened, RESULT_TIMEOUT, detail=f"timed out after {retries}")
    return Classification(
        opened, RESULT_OTHER, detail=f"never established (last {_state(end.last_state)})"
    )


def _closed(opened: str, end: Ending) -> Classification:
    facts = end.facts

    def closed(initiator: str, kind: str, detail: str) -> Classification:
        return Classification(opened, RESULT_ESTABLISHED, initiator, kind, detail)

    reason = f" ({end.reset_reason})" if end.reset_reason else ""
    if facts & Fact.RESET_RECEIVED:
        return closed(
            INITIATOR_REMOTE,
            CLOSE_RESET_RECEIVED,
            f"reset by the peer in {_state(end.reset_state)}",
        )
    if facts & Fact.RESET_SENT_BY_PROCESS:
        return closed(
            INITIATOR_LOCAL,
            CLOSE_ABORT,
            f"aborted by the application in {_state(end.reset_state)}: close with unread data "
            f"or SO_LINGER 0{reason}",
        )
    if facts & Fact.RESET_SENT:
        return closed(
            INITIATOR_LOCAL, CLOSE_RESET_SENT, f"reset sent in {_state(end.reset_state)}{reason}"
        )
    if facts & Fact.CLOSING:
        return closed(INITIATOR_SIMULTANEOUS, CLOSE_GRACEFUL, "both sides closed at once (CLOSING)")
    if facts & Fact.LOCAL_FIN_FIRST:
        if facts & Fact.HALF_CLOSE:
            return closed(
                INITIATOR_LOCAL, CLOSE_HALF_CLOSE, "this side shut down sending first, then closed"
            )
        return closed(INITIATOR_LOCAL, CLOSE_GRACEFUL, "this side closed first")
    if facts & Fact.REMOTE_FIN_FIRST:
        return closed(INITIATOR_REMOTE, CLOSE_GRACEFUL, "the peer closed first")
    return Classification(opened, RESULT_ESTABLISHED, detail="closed without FIN or RST")


def classify(end: Ending) -> Classification:
    """Classify a socket from what the probe saw of it."""
    facts = end.facts
    opened = _opened(facts)
    if facts & Fact.LISTENED or end.last_state == KernelState.LISTEN:
        return Classification(LISTENER, RESULT_OTHER, detail="a listening socket")
    verdict = (
        _closed(opened, end)
        if facts & Fact.ESTABLISHED or opened == OPEN_UNKNOWN
        else _failed_open(opened, end)
    )
    return dataclasses.replace(verdict, syn_retransmits=end.syn_retrans)
