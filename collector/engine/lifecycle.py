"""The lifecycle engine: kernel events in, the textbook's path of each connection out.

The kernel does not draw the textbook's diagram. The active closer's full socket goes
FIN_WAIT2 -> CLOSE and a timewait socket carries the rest of FIN-WAIT-2 and all of TIME-WAIT;
a listener's half-open connection is a request socket with no state event; most changes run in
softirq. The probe observes what it can (timewait and request sockets through their timers,
see probes/tcp_states.c); this engine turns those records into documented steps, each marked
observed or inferred, and classifies each connection when it ends (collector/engine/classify.py).

It imports nothing from bcc: replay feeds it recorded events, the tests feed it both.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from synfin.engine.classify import Classification, Ending, classify
from synfin.engine.states import KernelState, State, documented
from synfin.records.addresses import Endpoints
from synfin.records.events import Event, EventKind, Fact

# TCP_TIMEWAIT_LEN: compiled into the kernel (include/net/tcp.h), 2MSL as Linux counts it.
TIMEWAIT_LEN_NS = 60 * 1_000_000_000


@dataclass(frozen=True)
class Step:
    """One arrow of the documented diagram, as this connection took it."""

    source: State
    target: State
    at_ns: int | None  # None when the moment is not known
    since_ns: int | None  # when ``source`` was entered, if known
    observed: bool  # False: inferred from other evidence (``how`` says which)
    how: str = ""

    @property
    def duration_ns(self) -> int | None:
        if self.at_ns is None or self.since_ns is None or self.since_ns > self.at_ns:
            return None
        return self.at_ns - self.since_ns

    def to_dict(self) -> dict[str, object]:
        return {
            "from": self.source.value,
            "to": self.target.value,
            "at_ns": self.at_ns,
            "time_in_from_s": None if self.duration_ns is None else self.duration_ns / 1e9,
            "observed": self.observed,
            "how": self.how,
        }


@dataclass
class Connection(Endpoints):
    """One socket's life, as far as synfin has seen it."""

    skaddr: int
    family: int
    netns: int
    start_ns: int
    state: State
    state_ns: int | None
    sport: int = 0
    dport: int = 0
    saddr: bytes = b"\0" * 16
    daddr: bytes = b"\0" * 16
    owner_pid: int = 0
    comm: str = ""
    facts: Fact = field(default_factory=lambda: Fact(0))
    timewait: int = 0  # the timewait socket that took over, while it lives
    steps: list[Step] = field(default_factory=list)
    classification: Classification | None = None
    finished: bool = False  # the whole path is known: CLOSED, and no timewait socket left

    @property
    def key(self) -> tuple[int, int, bytes, int, bytes, int]:
        return (self.netns, self.family, self.saddr, self.sport, self.daddr, self.dport)

    def path(self) -> list[State]:
        if not self.steps:
            return [self.state]
        return [self.steps[0].source, *(step.target for step in self.steps)]

    def take(self, step: Step) -> Step:
        self.steps.append(step)
        self.state = step.target
        self.state_ns = step.at_ns
        return step

    def to_dict(self) -> dict[str, object]:
        return {
            "skaddr": f"{self.skaddr:#x}",
            "netns": self.netns,
            "local": self.local,
            "remote": self.remote,
            "owner_pid": self.owner_pid or None,
            "comm": self.comm or None,
            "path": [state.value for state in self.path()],
            "steps": [step.to_dict() for step in self.steps],
            "classification": self.classification.to_dict() if self.classification else None,
        }


# What the engine tells its caller, in order.
@dataclass(frozen=True)
class StepTaken:
    connection: Connection
    step: Step
    event: Event


@dataclass(frozen=True)
class Noted:
    """Something worth a line that is not a state change: a reset, a timewait hand-over."""

    connection: Connection | None
    text: str
    event: Event


@dataclass(frozen=True)
class Classified:
    connection: Connection
    classification: Classification
    event: Event


@dataclass(frozen=True)
class Finished:
    """The connection is over: CLOSED, and no timewait socket left. Its path is complete."""

    connection: Connection
    event: Event


Output = StepTaken | Noted | Classified | Finished


@dataclass
class SnmpCounts:
    """Counts comparable with the kernel's own Tcp MIB counters (/proc/net/snmp)."""

    active_opens: int = 0  # ActiveOpens: connect() started
    passive_opens: int = 0  # PassiveOpens: a listener's child socket created
    attempt_fails: int = 0  # AttemptFails: tcp_done() in SYN-SENT or SYN-RCVD
    estab_resets: int = 0  # EstabResets: ESTABLISHED or CLOSE-WAIT straight to CLOSED
    out_rsts: int = 0  # OutRsts: resets sent

    def count(self, event: Event) -> None:
        old, new = event.oldstate, event.newstate
        if event.kind == EventKind.RESET_SENT:
            self.out_rsts += 1
        if event.kind != EventKind.STATE_CHANGE:
            return
        if (old, new) == (KernelState.CLOSE, KernelState.SYN_SENT):
            self.active_opens += 1
        elif (old, new) == (KernelState.LISTEN, KernelState.SYN_RECV):
            self.passive_opens += 1
        elif new == KernelState.CLOSE and old in (KernelState.SYN_SENT, KernelState.SYN_RECV):
            # tcp_done() counts the failure; close() while connecting does not, and runs in the
            # process without a reset having arrived.
            reset = event.facts & Fact.RESET_RECEIVED
            if reset or not event.in_process_context:
                self.attempt_fails += 1
        elif new == KernelState.CLOSE and old in (KernelState.ESTABLISHED, KernelState.CLOSE_WAIT):
            self.estab_resets += 1


# (netns, family, local address, local port, remote address, remote port)
SocketKey = tuple[int, int, bytes, int, bytes, int]


def _key(event: Event) -> SocketKey:
    return (event.netns, event.family, event.saddr, event.sport, event.daddr, event.dport)


def _mirror(conn: Connection) -> tuple[bytes, int, bytes, int]:
    return (conn.daddr, conn.dport, conn.saddr, conn.sport)


class Engine:
    """Feed it events in order; it returns what each one means."""

    def __init__(
        self,
        reset_reasons: Mapping[int, str] | None = None,
        capacity: int = 65536,
        sees_timewait: bool = True,
    ) -> None:
        self.reset_reasons = dict(reset_reasons or {})
        self.capacity = capacity
        # False where the kernel hides timewait sockets from synfin (no timer capability).
        self.sees_timewait = sees_timewait
        self.live: OrderedDict[int, Connection] = OrderedDict()  # by socket address
        self.snmp: dict[int, SnmpCounts] = {}  # by network namespace
        self._children: dict[int, Event] = {}  # LISTEN -> SYN_RECV waiting for the next event
        # Sockets that existed before synfin, from a kernel snapshot, until their first event.
        self.preexisting: dict[SocketKey, State] = {}

    # -- public --------------------------------------------------------------------------------

    def feed(self, event: Event) -> list[Output]:
        self.snmp.setdefault(event.netns, SnmpCounts()).count(event)
        handler = {
            EventKind.STATE_CHANGE: self._state_change,
            EventKind.SOCKET_END: self._socket_end,
            EventKind.TIMEWAIT_END: self._timewait_end,
            EventKind.RESET_SENT: self._reset,
            EventKind.RESET_RECEIVED: self._reset,
        }[event.kind]
        outputs = self._flush_child(event.skaddr, event)
        outputs += handler(event)
        return outputs

    def seed(self, sockets: Iterable[tuple[SocketKey, State]]) -> None:
        """Sockets the kernel reports (a snapshot) that synfin has no events for yet."""
        tracked = {conn.key for conn in self.live.values()}
        self.preexisting = {key: state for key, state in sockets if key not in tracked}

    def belief(self) -> dict[tuple[int, State], int]:
        """How many live sockets the engine believes are in each (netns, documented state)."""
        counts: dict[tuple[int, State], int] = {}
        for skaddr, conn in self.live.items():
            if conn.timewait and skaddr != conn.timewait:
                continue  # counted once, under its timewait socket
            key = (conn.netns, conn.state)
            counts[key] = counts.get(key, 0) + 1
        for (netns, *_tuple), state in self.preexisting.items():
            counts[(netns, state)] = counts.get((netns, state), 0) + 1
        return counts

    # -- connections ---------------------------------------------------------------------------

    def _connection(self, event: Event) -> Connection:
        conn = self.live.get(event.skaddr)
        if conn is None:
            conn = Connection(
                skaddr=event.skaddr,
                family=event.family,
                netns=event.netns,
                start_ns=event.start_ns,
                state=documented(event.oldstate),
                state_ns=event.since_ns or None,
            )
            self.live[event.skaddr] = conn
            if len(self.live) > self.capacity:
                self.live.popitem(last=False)  # events were lost: forget the oldest
            if event.facts & Fact.PREEXISTING:
                self.preexisting.pop(_key(event), None)
        if event.sport or event.dport or not conn.sport:
            # A client's first event has local port 0: later events fill the 4-tuple in.
            conn.sport, conn.dport, conn.saddr, conn.daddr = (
                event.sport,
                event.dport,
                event.saddr,
                event.daddr,
            )
        if event.owner_pid:
            conn.owner_pid, conn.comm = event.owner_pid, event.comm
        conn.facts |= event.facts
        return conn

    def _step(
        self, conn: Connection, event: Event, target: State, at: int | None, **kw: object
    ) -> StepTaken:
        step = Step(conn.state, target, at, conn.state_ns, **kw)  # type: ignore[arg-type]
        return StepTaken(conn, conn.take(step), event)

    # -- handlers ------------------------------------------------------------------------------

    def _state_change(self, event: Event) -> list[Output]:
        if event.oldstate == KernelState.LISTEN and event.newstate == KernelState.SYN_RECV:
            # The child's SYN time is linked in the kernel just after this event: wait for the
            # next one (microseconds later) to place SYN-RCVD correctly.
            self._connection(event)
            self._children[event.skaddr] = event
            return []
        conn = self._connection(event)
        if conn.timewait == event.skaddr:
            return [self._rearmed(conn, event)]
        if event.aux:
            return self._hand_over(conn, event)
        if self._unseen_hand_over(conn, event):
            return self._hand_over_unseen(conn, event)
        outputs: list[Output] = [
            self._step(conn, event, documented(event.newstate), event.ts_ns, observed=True)
        ]
        if event.newstate == KernelState.LAST_ACK:
            outputs += self._peer_sent_fin(conn, event)
        return outputs

    def _rearmed(self, conn: Connection, event: Event) -> StepTaken:
        """The timewait timer re-armed: the peer's FIN moved the socket into TIME-WAIT."""
        how = "timewait timer re-armed by the peer's FIN"
        last = conn.steps[-1] if conn.steps else None
        if conn.state is documented(event.newstate) and last is not None and not last.observed:
            # Already inferred (from the peer's FIN on this host): the observation replaces it.
            conn.steps.pop()
            conn.state, conn.state_ns = last.source, last.since_ns
            how += " (confirms the inference)"
        return self._step(
            conn, event, documented(event.newstate), event.ts_ns, observed=True, how=how
        )

    def _flush_child(self, skaddr: int, now: Event) -> list[Output]:
        created = self._children.pop(skaddr, None)
        conn = self.live.get(skaddr)
        if created is None or conn is None:
            return []
        conn.facts |= now.facts
        if now.facts & Fact.SYN_OBSERVED:
            at, observed, how = now.start_ns, True, "SYN's arrival (request socket)"
        else:
            at, observed, how = (
                created.ts_ns,
                False,
                "SYN's arrival not observed: shown at the third ACK",
            )
        conn.start_ns = at
        step = self._step(conn, created, State.SYN_RCVD, at, observed=observed, how=how)
        return [step]

    def _hand_over(self, conn: Connection, event: Event) -> list[Output]:
        """FIN_WAIT2|CLOSING -> CLOSE with a timewait socket taking the connection over."""
        conn.timewait = event.aux
        self.live[event.aux] = conn
        if event.detail == KernelState.TIME_WAIT:
            return [
                self._step(
                    conn, event, State.TIME_WAIT, event.ts_ns, observed=True, how="timewait socket"
                )
            ]
        # Closed before the peer's FIN: FIN-WAIT-2 goes on, in the timewait socket.
        return [Noted(conn, "FIN-WAIT-2 continues in a timewait socket", event)]

    def _unseen_hand_over(self, conn: Connection, event: Event) -> bool:
        """FIN_WAIT2|CLOSING -> CLOSE without a reset, on a kernel that hides timewait sockets:
        tcp_time_wait() handed the connection to one; synfin just cannot see it."""
        resets = Fact.RESET_RECEIVED | Fact.RESET_SENT
        return (
            not self.sees_timewait
            and event.newstate == KernelState.CLOSE
            and event.oldstate in (KernelState.FIN_WAIT2, KernelState.CLOSING)
            and not conn.facts & resets
        )

    def _hand_over_unseen(self, conn: Connection, event: Event) -> list[Output]:
        note = "continues in a timewait socket, which this kernel does not let synfin see"
        if event.oldstate == KernelState.CLOSING:
            how = f"inferred: CLOSING ends in TIME-WAIT; the connection {note}"
            return [self._step(conn, event, State.TIME_WAIT, event.ts_ns, observed=False, how=how)]
        return [Noted(conn, f"FIN-WAIT-2 {note}", event)]

    def _peer_sent_fin(self, closer: Connection, event: Event) -> list[Output]:
        """The passive closer sent its FIN: a local active closer in FIN-WAIT-2 gets it now."""
        for conn in self.live.values():
            if (
                conn.state is State.FIN_WAIT_2
                and (conn.timewait or not self.sees_timewait)
                and (conn.saddr, conn.sport, conn.daddr, conn.dport) == _mirror(closer)
            ):
                how = "inferred from the peer's FIN (both ends on this host)"
                return [
                    self._step(conn, event, State.TIME_WAIT, event.ts_ns, observed=False, how=how)
                ]
        return []

    def _socket_end(self, event: Event) -> list[Output]:
        conn = self._connection(event)
        reason = self.reset_reasons.get(
            event.reason, f"reason {event.reason}" if event.reason else ""
        )
        ending = Ending(conn.facts, event.syn_retrans, event.detail, reason)
        conn.classification = classify(ending)
        self.live.pop(event.skaddr, None)
        outputs: list[Output] = [Classified(conn, conn.classification, event)]
        if not conn.timewait:
            conn.finished = True
            outputs.append(Finished(conn, event))
        return outputs

    def _timewait_end(self, event: Event) -> list[Output]:
        conn = self.live.pop(event.skaddr, None)
        if conn is None:
            return []
        conn.timewait = 0
        conn.finished = True
        outputs: list[Output] = []
        expired = event.timer_expired
        if event.oldstate == KernelState.TIME_WAIT and conn.state is not State.TIME_WAIT:
            # The peer's FIN arrived unseen; the timer, re-armed then, ran its full 2MSL.
            at = event.ts_ns - TIMEWAIT_LEN_NS if expired else None
            how = (
                "inferred: the timewait timer ran 2MSL from the peer's FIN"
                if expired
                else ("inferred: the timewait socket was in TIME-WAIT; entry not observed")
            )
            outputs.append(self._step(conn, event, State.TIME_WAIT, at, observed=False, how=how))
        if conn.state is State.TIME_WAIT:
            how = "2MSL expired" if expired else "killed before 2MSL (RST, reuse or ss -K)"
        else:
            how = "FIN-WAIT-2 timed out" if expired else "killed in FIN-WAIT-2"
        outputs.append(self._step(conn, event, State.CLOSED, event.ts_ns, observed=True, how=how))
        outputs.append(Finished(conn, event))
        return outputs

    def _reset(self, event: Event) -> list[Output]:
        conn = self.live.get(event.skaddr) if event.skaddr else None
        if conn is not None:
            conn.facts |= event.facts
        state = documented(event.detail).value if event.detail else "no socket"
        if event.kind == EventKind.RESET_RECEIVED:
            return [Noted(conn, f"RST received in {state}", event)]
        reason = self.reset_reasons.get(event.reason, "")
        text = f"RST sent in {state}" + (f" ({reason})" if reason else "")
        return [Noted(conn, text, event)]
