"""The lifecycle engine: kernel events in, the textbook's path of each connection out.

The kernel does not draw the textbook's diagram. The active closer's full socket goes
FIN_WAIT2 -> CLOSE and a timewait socket carries the rest of FIN-WAIT-2 and all of TIME-WAIT;
a listener's half-open connection is a request socket with no state event; most changes run in
softirq. The probe observes what it can (timewait and request sockets through their timers,
see probes/tcp_states.c); this engine turns those records into documented steps, each marked
observed or inferred, and classifies each connection when it ends (collector/engine/classify.py).

It imports nothing from bcc: replay feeds it recorded events, the tests feed it both.
(Over 300 lines: one state machine, whose handlers read each other's bookkeeping.)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace

from synfin.engine.classify import Ending, classify
from synfin.engine.connection import (
    Classified,
    Connection,
    Finished,
    Noted,
    Output,
    SocketKey,
    Step,
    StepTaken,
)
from synfin.engine.snmp import SnmpCounts
from synfin.engine.states import KernelState, State, documented, textbook_edge
from synfin.records.description import KernelDescription
from synfin.records.events import Event, EventKind, Fact

# TCP_TIMEWAIT_LEN: compiled into the kernel (include/net/tcp.h), 2MSL as Linux counts it.
TIMEWAIT_LEN_NS = 60 * 1_000_000_000
OFF_DIAGRAM = "not an arrow of the textbook diagram"


def _key(event: Event) -> SocketKey:
    return (event.netns, event.family, event.saddr, event.sport, event.daddr, event.dport)


def _four_tuple(conn: Connection) -> tuple[bytes, int, bytes, int]:
    return (conn.saddr, conn.sport, conn.daddr, conn.dport)


def _mirror(conn: Connection) -> tuple[bytes, int, bytes, int]:
    return (conn.daddr, conn.dport, conn.saddr, conn.sport)


class Engine:
    """Feed it events in order; it returns what each one means."""

    def __init__(
        self,
        description: KernelDescription | None = None,
        capacity: int = 65536,
    ) -> None:
        self.description = description or KernelDescription()
        self.reset_reasons = dict(self.description.reset_reasons)
        # False where the kernel hides timewait sockets from synfin (no timer capability).
        self.sees_timewait = self.description.sees_timewait
        self.capacity = capacity
        self.live: OrderedDict[int, Connection] = OrderedDict()  # by socket address
        self.snmp: dict[int, SnmpCounts] = {}  # by network namespace
        self._children: dict[int, Event] = {}  # LISTEN -> SYN_RECV waiting for the next event
        # Sockets that existed before synfin, from a kernel snapshot, until their first event.
        self.preexisting: dict[SocketKey, State] = {}
        # Connections in FIN-WAIT-2 by their 4-tuple, for the peer's FIN inference: a busy
        # host holds a minute of TIME-WAIT connections, too many to search on every LAST-ACK.
        self._in_fin_wait_2: dict[tuple[bytes, int, bytes, int], list[Connection]] = {}
        self._handlers = {
            EventKind.STATE_CHANGE: self._state_change,
            EventKind.SOCKET_END: self._socket_end,
            EventKind.TIMEWAIT_END: self._timewait_end,
            EventKind.RESET_SENT: self._reset,
            EventKind.RESET_RECEIVED: self._reset,
        }

    # -- public --------------------------------------------------------------------------------

    def feed(self, event: Event) -> list[Output]:
        snmp = self.snmp.get(event.netns)
        if snmp is None:
            snmp = self.snmp[event.netns] = SnmpCounts()
        snmp.count(event)
        if self._children:
            outputs = self._flush_child(event.skaddr, event)
            outputs += self._handlers[event.kind](event)
            return outputs
        return self._handlers[event.kind](event)

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
                _, oldest = self.live.popitem(last=False)  # events were lost: forget it
                self._unindex(oldest)
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
        if step.source is not target and textbook_edge(step.source, target) is None:
            # A kernel path the diagram has no arrow for (events lost, an unknown kernel state):
            # shown as it happened, and said to be off the diagram.
            how = f"{step.how}; " if step.how else ""
            step = replace(step, how=f"{how}{OFF_DIAGRAM}")
        taken = StepTaken(conn, conn.take(step), event)
        if target is State.FIN_WAIT_2:
            self._in_fin_wait_2.setdefault(_four_tuple(conn), []).append(conn)
        return taken

    def _unindex(self, conn: Connection) -> None:
        waiting = self._in_fin_wait_2.get(_four_tuple(conn))
        if waiting and conn in waiting:
            waiting.remove(conn)
            if not waiting:
                del self._in_fin_wait_2[_four_tuple(conn)]

    # -- handlers ------------------------------------------------------------------------------

    def _state_change(self, event: Event) -> list[Output]:
        if event.oldstate == event.newstate:
            # close() after shutdown(): the kernel announces the state again. Not an arrow.
            state = documented(event.newstate)
            text = f"closed by the application after shutdown, in {state} (no transition)"
            return [Noted(self._connection(event), text, event)]
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
        for conn in list(self._in_fin_wait_2.get(_mirror(closer), ())):
            if conn.state is not State.FIN_WAIT_2:
                self._unindex(conn)  # moved on since (or was forgotten)
            elif conn.timewait or not self.sees_timewait:
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
            self._unindex(conn)
            outputs.append(Finished(conn, event))
        return outputs

    def _timewait_end(self, event: Event) -> list[Output]:
        conn = self.live.pop(event.skaddr, None)
        if conn is None:
            return []
        conn.timewait = 0
        conn.finished = True
        self._unindex(conn)
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
