"""The textbook TCP state machine and the kernel's states, as data.

The documented states are the ones the handshake and teardown diagrams name (SYN-SENT,
SYN-RCVD, ESTABLISHED, FIN-WAIT-1, ...). The kernel keeps its own numbering (``TCP_*`` in
``include/net/tcp_states.h``) and a few states the textbook does not draw: a half-open
connection waiting for the third ACK is a request mini-socket in ``TCP_NEW_SYN_RECV``, and
TIME-WAIT is carried by a separate timewait socket.

This module never imports bcc: it is the model that decoding, the lifecycle engine, the
metrics and the live views all share, and it is tested on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType


class State(enum.Enum):
    """A documented TCP state, as the textbook draws it."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RCVD = "SYN-RCVD"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        """The name as a Prometheus label value: lower snake_case (``syn_sent``)."""
        return self.name.lower()

    def __str__(self) -> str:
        return self.value


class KernelState(enum.IntEnum):
    """Linux's ``TCP_*`` socket states (include/net/tcp_states.h)."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    NEW_SYN_RECV = 12  # request mini-socket of a half-open passive open (since 4.1)
    BOUND_INACTIVE = 13  # bound, never listened or connected; sock_diag only (since 6.7)


KERNEL_TO_DOCUMENTED: Mapping[KernelState, State] = MappingProxyType(
    {
        KernelState.ESTABLISHED: State.ESTABLISHED,
        KernelState.SYN_SENT: State.SYN_SENT,
        KernelState.SYN_RECV: State.SYN_RCVD,
        KernelState.FIN_WAIT1: State.FIN_WAIT_1,
        KernelState.FIN_WAIT2: State.FIN_WAIT_2,
        KernelState.TIME_WAIT: State.TIME_WAIT,
        KernelState.CLOSE: State.CLOSED,
        KernelState.CLOSE_WAIT: State.CLOSE_WAIT,
        KernelState.LAST_ACK: State.LAST_ACK,
        KernelState.LISTEN: State.LISTEN,
        KernelState.CLOSING: State.CLOSING,
        # The server's side of a half-open connection: the textbook's SYN-RCVD, held by the
        # kernel in a request socket until the third ACK creates the full socket.
        KernelState.NEW_SYN_RECV: State.SYN_RCVD,
        # A socket that is bound but has done nothing yet is, in the textbook, still closed.
        KernelState.BOUND_INACTIVE: State.CLOSED,
    }
)


def kernel_state_name(value: int) -> str:
    """``TCP_SYN_SENT`` for 2; ``unknown:<n>`` for a value this model does not know."""
    try:
        return f"TCP_{KernelState(value).name}"
    except ValueError:
        return f"unknown:{value}"


# By plain number: the lookup runs for every event, and building an enum member costs more.
_DOCUMENTED_BY_VALUE = {int(kernel): state for kernel, state in KERNEL_TO_DOCUMENTED.items()}


def documented(value: int) -> State:
    """The documented state for a kernel ``TCP_*`` value; ``State.UNKNOWN`` if unknown."""
    return _DOCUMENTED_BY_VALUE.get(value, State.UNKNOWN)


class By(enum.Enum):
    """Who moves an end along an arrow."""

    APPLICATION = "application"  # a call: listen, connect, close
    SENT = "sent"  # a segment this end sends
    RECEIVED = "received"  # a segment this end receives
    TIMER = "timer"  # a timer of this end runs out


class Call(enum.Enum):
    """The application's calls that the diagram draws."""

    LISTEN = "listen"
    CONNECT = "connect"
    CLOSE = "close"


class TextbookSegment(enum.Enum):
    """The segments the diagram names (and its timeout), whatever else they carry."""

    SYN = "SYN"
    SYN_ACK = "SYN+ACK"
    ACK_OF_SYN = "ACK of SYN"
    # A FIN that does not acknowledge the other end's FIN: received in FIN-WAIT-1, it means the
    # FINs crossed.
    FIN = "FIN"
    FIN_ACK = "FIN with the ACK of the other FIN"
    ACK_OF_FIN = "ACK of FIN"
    RST = "RST"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Trigger:
    """What moves an end along an arrow, in a form a program can match."""

    by: By
    what: Call | TextbookSegment

    def __post_init__(self) -> None:
        call, timeout = isinstance(self.what, Call), self.what is TextbookSegment.TIMEOUT
        if call != (self.by is By.APPLICATION) or timeout != (self.by is By.TIMER):
            raise ValueError(f"a trigger by {self.by.value} cannot be {self.what.value}")

    def __str__(self) -> str:
        if self.by is By.APPLICATION:
            return f"{self.what.value}()"
        if self.by is By.TIMER:
            return self.what.value
        return f"{self.by.value} {self.what.value}"


@dataclass(frozen=True)
class Edge:
    """One arrow of the textbook state diagram."""

    source: State
    target: State
    cause: str  # what the application did or what segment arrived
    sends: str  # what this side sends as a result ("" for nothing)
    # The cause for programs. An application call is also listed as the segment it puts on the
    # wire, which is all an observer of another host's segments can see of it.
    triggers: tuple[Trigger, ...]


T = TextbookSegment
ON_LISTEN = Trigger(By.APPLICATION, Call.LISTEN)
ON_CONNECT = Trigger(By.APPLICATION, Call.CONNECT)
ON_CLOSE = Trigger(By.APPLICATION, Call.CLOSE)
ON_TIMEOUT = Trigger(By.TIMER, T.TIMEOUT)


def sent(what: TextbookSegment) -> Trigger:
    return Trigger(By.SENT, what)


def received(what: TextbookSegment) -> Trigger:
    return Trigger(By.RECEIVED, what)


_RST = (sent(T.RST), received(T.RST))  # an abort sends one; either way the connection is gone

S = State
# The state diagram of the handshake and teardown (RFC 9293 figure 5, as the seed documents draw
# it). The ladder infers the states of an end on another host from these triggers, and
# docs/states.md is generated from this table (python -m synfin.engine.states_doc docs/states.md).
TEXTBOOK_EDGES: tuple[Edge, ...] = (
    Edge(S.CLOSED, S.LISTEN, "passive open (listen)", "", (ON_LISTEN,)),
    Edge(S.CLOSED, S.SYN_SENT, "active open (connect)", "SYN seq=x", (ON_CONNECT, sent(T.SYN))),
    Edge(S.LISTEN, S.SYN_RCVD, "SYN seq=x received", "SYN+ACK seq=y ack=x+1", (received(T.SYN),)),
    # A listener ignores an RST, and the RST it sends to a stray ACK leaves it listening
    # (RFC 9293 3.10.7.2).
    Edge(S.LISTEN, S.CLOSED, "close", "", (ON_CLOSE,)),
    Edge(
        S.SYN_SENT, S.ESTABLISHED, "SYN+ACK received", "ACK seq=x+1 ack=y+1", (received(T.SYN_ACK),)
    ),
    Edge(S.SYN_SENT, S.SYN_RCVD, "SYN received (simultaneous open)", "SYN+ACK", (received(T.SYN),)),
    # The RST a connecting end sends answers an unacceptable ACK and leaves it in SYN-SENT
    # (RFC 9293 3.10.7.3); Linux sends none when connect is aborted.
    Edge(
        S.SYN_SENT,
        S.CLOSED,
        "close, RST or SYN timeout",
        "",
        (ON_CLOSE, received(T.RST), ON_TIMEOUT),
    ),
    Edge(S.SYN_RCVD, S.ESTABLISHED, "ACK of SYN received", "", (received(T.ACK_OF_SYN),)),
    Edge(S.SYN_RCVD, S.FIN_WAIT_1, "close", "FIN seq=u", (ON_CLOSE, sent(T.FIN))),
    Edge(S.SYN_RCVD, S.CLOSED, "RST sent (abort) or received", "", _RST),
    Edge(S.ESTABLISHED, S.FIN_WAIT_1, "close (active close)", "FIN seq=u", (ON_CLOSE, sent(T.FIN))),
    Edge(
        S.ESTABLISHED, S.CLOSE_WAIT, "FIN seq=u received", "ACK seq=v ack=u+1", (received(T.FIN),)
    ),
    Edge(S.ESTABLISHED, S.CLOSED, "RST sent or received", "", _RST),
    Edge(S.FIN_WAIT_1, S.FIN_WAIT_2, "ACK of FIN received", "", (received(T.ACK_OF_FIN),)),
    Edge(S.FIN_WAIT_1, S.CLOSING, "FIN received (simultaneous close)", "ACK", (received(T.FIN),)),
    Edge(S.FIN_WAIT_1, S.TIME_WAIT, "FIN+ACK received", "ACK", (received(T.FIN_ACK),)),
    Edge(S.FIN_WAIT_1, S.CLOSED, "RST sent or received", "", _RST),
    Edge(
        S.FIN_WAIT_2,
        S.TIME_WAIT,
        "FIN seq=w received",
        "ACK seq=u+1 ack=w+1",
        (received(T.FIN), received(T.FIN_ACK)),
    ),
    Edge(S.FIN_WAIT_2, S.CLOSED, "RST, or FIN-WAIT-2 timeout", "", (*_RST, ON_TIMEOUT)),
    # The FIN from CLOSE-WAIT acknowledges the other one; an observer that cannot match its ack
    # field to that FIN still sees the close.
    Edge(
        S.CLOSE_WAIT,
        S.LAST_ACK,
        "close",
        "FIN seq=w ack=u+1",
        (ON_CLOSE, sent(T.FIN_ACK), sent(T.FIN)),
    ),
    Edge(S.CLOSE_WAIT, S.CLOSED, "RST sent or received", "", _RST),
    Edge(S.CLOSING, S.TIME_WAIT, "ACK of FIN received", "", (received(T.ACK_OF_FIN),)),
    # RFC 9293 sends no RST from the last three states, but one seen from an end there means it
    # holds no connection any more: it aborted (Linux does, with data unsent), or its socket
    # was gone (no timewait socket past net.ipv4.tcp_max_tw_buckets) and the kernel answered.
    Edge(S.CLOSING, S.CLOSED, "RST", "", _RST),
    Edge(S.LAST_ACK, S.CLOSED, "ACK of FIN received, or RST", "", (received(T.ACK_OF_FIN), *_RST)),
    # An RST received in TIME-WAIT ends it unless net.ipv4.tcp_rfc1337=1 (RFC 1337).
    Edge(S.TIME_WAIT, S.CLOSED, "2MSL timeout, or RST", "", (ON_TIMEOUT, *_RST)),
)

_EDGE_INDEX: Mapping[tuple[State, State], Edge] = MappingProxyType(
    {(edge.source, edge.target): edge for edge in TEXTBOOK_EDGES}
)


def textbook_edge(source: State, target: State) -> Edge | None:
    """The diagram's edge from ``source`` to ``target``, or None if the textbook has none."""
    return _EDGE_INDEX.get((source, target))


def _by_trigger(edges: Iterable[Edge]) -> Mapping[tuple[State, Trigger], State]:
    index: dict[tuple[State, Trigger], State] = {}
    for edge in edges:
        for trigger in edge.triggers:
            known = index.setdefault((edge.source, trigger), edge.target)
            if known is not edge.target:
                raise ValueError(f"{edge.source} on {trigger} goes to {known} and {edge.target}")
    return MappingProxyType(index)


NEXT_STATE: Mapping[tuple[State, Trigger], State] = _by_trigger(TEXTBOOK_EDGES)


def next_state(source: State, trigger: Trigger) -> State | None:
    """Where the diagram takes an end in ``source`` on ``trigger``; None: no arrow, it stays."""
    return NEXT_STATE.get((source, trigger))


DOCUMENTED_STATES: tuple[State, ...] = tuple(s for s in State if s is not State.UNKNOWN)

# The documented paths of one connection in the common cases, end to end.
ACTIVE_OPEN_ACTIVE_CLOSE: tuple[State, ...] = (
    State.CLOSED,
    State.SYN_SENT,
    State.ESTABLISHED,
    State.FIN_WAIT_1,
    State.FIN_WAIT_2,
    State.TIME_WAIT,
    State.CLOSED,
)
PASSIVE_OPEN_PASSIVE_CLOSE: tuple[State, ...] = (
    State.LISTEN,
    State.SYN_RCVD,
    State.ESTABLISHED,
    State.CLOSE_WAIT,
    State.LAST_ACK,
    State.CLOSED,
)
