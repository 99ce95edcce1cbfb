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
from collections.abc import Mapping
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


@dataclass(frozen=True)
class Edge:
    """One arrow of the textbook state diagram."""

    source: State
    target: State
    cause: str  # what the application did or what segment arrived
    sends: str  # what this side sends as a result ("" for nothing)


# The state diagram of the handshake and teardown (RFC 9293 figure 5, as the seed documents draw
# it). The lifecycle engine checks each connection's path against these edges.
TEXTBOOK_EDGES: tuple[Edge, ...] = (
    Edge(State.CLOSED, State.LISTEN, "passive open (listen)", ""),
    Edge(State.CLOSED, State.SYN_SENT, "active open (connect)", "SYN seq=x"),
    Edge(State.LISTEN, State.SYN_RCVD, "SYN seq=x received", "SYN+ACK seq=y ack=x+1"),
    Edge(State.LISTEN, State.CLOSED, "close", ""),
    Edge(State.SYN_SENT, State.ESTABLISHED, "SYN+ACK received", "ACK seq=x+1 ack=y+1"),
    Edge(State.SYN_SENT, State.SYN_RCVD, "SYN received (simultaneous open)", "SYN+ACK"),
    Edge(State.SYN_SENT, State.CLOSED, "close, RST or SYN timeout", ""),
    Edge(State.SYN_RCVD, State.ESTABLISHED, "ACK of SYN received", ""),
    Edge(State.SYN_RCVD, State.FIN_WAIT_1, "close", "FIN seq=u"),
    Edge(State.SYN_RCVD, State.CLOSED, "RST received", ""),
    Edge(State.ESTABLISHED, State.FIN_WAIT_1, "close (active close)", "FIN seq=u"),
    Edge(State.ESTABLISHED, State.CLOSE_WAIT, "FIN seq=u received", "ACK seq=v ack=u+1"),
    Edge(State.ESTABLISHED, State.CLOSED, "RST sent or received", ""),
    Edge(State.FIN_WAIT_1, State.FIN_WAIT_2, "ACK of FIN received", ""),
    Edge(State.FIN_WAIT_1, State.CLOSING, "FIN received (simultaneous close)", "ACK"),
    Edge(State.FIN_WAIT_1, State.TIME_WAIT, "FIN+ACK received", "ACK"),
    Edge(State.FIN_WAIT_1, State.CLOSED, "RST sent or received", ""),
    Edge(State.FIN_WAIT_2, State.TIME_WAIT, "FIN seq=w received", "ACK seq=u+1 ack=w+1"),
    Edge(State.FIN_WAIT_2, State.CLOSED, "RST, or FIN-WAIT-2 timeout", ""),
    Edge(State.CLOSE_WAIT, State.LAST_ACK, "close", "FIN seq=w ack=u+1"),
    Edge(State.CLOSE_WAIT, State.CLOSED, "RST sent or received", ""),
    Edge(State.CLOSING, State.TIME_WAIT, "ACK of FIN received", ""),
    Edge(State.CLOSING, State.CLOSED, "RST", ""),
    Edge(State.LAST_ACK, State.CLOSED, "ACK of FIN received", ""),
    Edge(State.TIME_WAIT, State.CLOSED, "2MSL timeout", ""),
)

_EDGE_INDEX: Mapping[tuple[State, State], Edge] = MappingProxyType(
    {(edge.source, edge.target): edge for edge in TEXTBOOK_EDGES}
)


def textbook_edge(source: State, target: State) -> Edge | None:
    """The diagram's edge from ``source`` to ``target``, or None if the textbook has none."""
    return _EDGE_INDEX.get((source, target))


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
