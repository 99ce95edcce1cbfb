"""One connection as the ladder diagram draws it: its segments, and each end's states.

Segments come from the capture (collector/kernel/segment_probe.py), states from the lifecycle
engine's steps (collector/engine/lifecycle.py); the two are joined by 4-tuple and time. The end
that sent the first SYN is the initiator (the left column); an end with no kernel socket on this
host has its states inferred from the segments instead (collector/ladder/peer_states.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synfin.engine.connection import Connection, Output, Step, StepTaken
from synfin.engine.states import State
from synfin.records.addresses import format_endpoint
from synfin.records.segments import Flag, Segment, covers

# A 4-tuple with its ends in a fixed order, so both directions map to one key.
FlowKey = tuple[int, tuple[bytes, int], tuple[bytes, int]]

# A long trace on a busy host must not grow without bound: connections that never end (or
# whose end is not captured) and local sockets never joined to one are forgotten, oldest
# first, beyond these numbers, and counted.
MAX_DIALOGUES = 4096
MAX_KERNEL_VIEWS = 16384

# Kernel steps may be recorded a little before the segment that carries them out (connect
# sets SYN-SENT, then the SYN leaves) or after a segment that ended a previous use of the
# same 4-tuple; this much slack joins them to the right connection.
JOIN_SLACK_NS = 1_000_000_000


def flow_key(family: int, a: tuple[bytes, int], b: tuple[bytes, int]) -> FlowKey:
    return (family, min(a, b), max(a, b))


def segment_key(segment: Segment) -> FlowKey:
    return flow_key(segment.family, (segment.saddr, segment.sport), (segment.daddr, segment.dport))


def connection_key(conn: Connection) -> FlowKey:
    return flow_key(conn.family, (conn.saddr, conn.sport), (conn.daddr, conn.dport))


@dataclass
class KernelView:
    """One local socket, as the lifecycle engine follows it."""

    connection: Connection

    @property
    def finished(self) -> bool:
        """CLOSED, and no timewait socket left: its whole path is known."""
        return self.connection.finished

    @property
    def steps(self) -> list[Step]:
        """Its documented steps. The engine's own list: it corrects an inferred step when an
        observation replaces it."""
        return self.connection.steps

    @property
    def first_ns(self) -> int:
        return _first_ns(self.connection)


@dataclass
class End:
    """One end of the connection: its address and, when it is on this host, its socket."""

    family: int
    address: bytes
    port: int
    kernel: KernelView | None = None

    @property
    def endpoint(self) -> str:
        return format_endpoint(self.family, self.address, self.port)

    @property
    def process(self) -> str:
        if self.kernel is None or not self.kernel.connection.owner_pid:
            return ""
        conn = self.kernel.connection
        return f"{conn.owner_pid}/{conn.comm}" if conn.comm else str(conn.owner_pid)

    def sent(self, segment: Segment) -> bool:
        return (segment.saddr, segment.sport) == (self.address, self.port)


@dataclass
class Dialogue:
    """Everything seen of one connection, from its first segment on."""

    family: int
    initiator: End  # sent the first SYN (or, when the handshake was missed, the first segment)
    responder: End
    segments: list[Segment] = field(default_factory=list)
    handshake_seen: bool = True
    stopped_early: bool = False  # trace ended before the connection did

    @property
    def ends(self) -> tuple[End, End]:
        return (self.initiator, self.responder)

    @property
    def start_ns(self) -> int:
        times = [s.ts_ns for s in self.segments]
        times += [end.kernel.first_ns for end in self.ends if end.kernel is not None]
        return min(times)

    @property
    def last_ns(self) -> int:
        return self.segments[-1].ts_ns if self.segments else self.start_ns

    def end_of(self, segment: Segment) -> End:
        """The end that sent ``segment``."""
        return self.initiator if self.initiator.sent(segment) else self.responder

    # -- how far it got ----------------------------------------------------------------------

    def reset(self) -> bool:
        return any(s.has(Flag.RST) for s in self.segments)

    def fins_answered(self) -> bool:
        """Both ends sent a FIN and each FIN was acknowledged."""
        for end in self.ends:
            fins = [s for s in self.segments if s.has(Flag.FIN) and end.sent(s)]
            if not fins:
                return False
            needed = fins[-1].seq + fins[-1].sequence_space
            answered = any(
                s.has(Flag.ACK) and not end.sent(s) and covers(s.ack, needed) for s in self.segments
            )
            if not answered:
                return False
        return True

    def over(self, wait_for_time_wait: bool) -> bool:
        """Nothing more will happen: every local socket is gone (or, unless waiting for it,
        sits in TIME-WAIT), and the segments show the end too."""
        local = [end.kernel for end in self.ends if end.kernel is not None]
        for view in local:
            state = view.connection.state
            if view.finished or state is State.CLOSED:
                continue
            if not wait_for_time_wait and state is State.TIME_WAIT:
                continue
            return False
        if self.reset() or self.fins_answered():
            return True
        # A connect that timed out or was refused without a captured RST: its socket is gone.
        return bool(local) and all(v.finished for v in local)


# A local socket waiting for its connection's first segment: (4-tuple, its own address, port).
EndKey = tuple[FlowKey, bytes, int]


@dataclass
class Tracker:
    """Joins segments and engine outputs into dialogues, and says which are over.

    Joining is driven by arrivals, so each record costs the same however many connections are
    open: a socket's step finds its dialogue by 4-tuple, or waits for it by 4-tuple.
    """

    wait_for_time_wait: bool = True
    live: dict[FlowKey, Dialogue] = field(default_factory=dict)
    waiting: dict[EndKey, Connection] = field(default_factory=dict)  # sockets ahead of segments
    retired: list[Dialogue] = field(default_factory=list)  # replaced by a new use of the tuple
    forgotten: int = 0  # dialogues and sockets dropped at the limits above
    # Sockets whose dialogue was handed over (skaddr, start): a step after that (TIME-WAIT's
    # end, when ladders do not wait for it) has no segment to come, so it must not wait.
    handed_over: dict[tuple[int, int], None] = field(default_factory=dict)

    def on_segment(self, segment: Segment) -> None:
        key = segment_key(segment)
        dialogue = self.live.get(key)
        opening = segment.has(Flag.SYN) and not segment.has(Flag.ACK)
        if dialogue is not None and opening and _new_use(dialogue, segment):
            # The 4-tuple is used again: the old dialogue is over as far as it got.
            dialogue.stopped_early = not dialogue.over(self.wait_for_time_wait)
            self.retired.append(self.live.pop(key))
            dialogue = None
        if dialogue is None:
            dialogue = self._open(key, segment, opening)
        dialogue.segments.append(segment)

    def _open(self, key: FlowKey, segment: Segment, opening: bool) -> Dialogue:
        sender = End(segment.family, segment.saddr, segment.sport)
        receiver = End(segment.family, segment.daddr, segment.dport)
        # Without its SYN, the first segment's sender is only a guess at the initiator.
        dialogue = Dialogue(segment.family, sender, receiver, handshake_seen=opening)
        for end in dialogue.ends:
            conn = self.waiting.pop((key, end.address, end.port), None)
            if conn is not None and _first_ns(conn) + JOIN_SLACK_NS >= segment.ts_ns:
                end.kernel = KernelView(conn)
        self.live[key] = dialogue
        if len(self.live) > MAX_DIALOGUES:
            del self.live[next(iter(self.live))]  # dicts keep insertion order: the oldest
            self.forgotten += 1
        return dialogue

    def on_output(self, output: Output) -> None:
        if not isinstance(output, StepTaken):
            return
        conn = output.connection
        if conn.sport == 0 or conn.dport == 0:
            return  # a listener, or a connect whose port is not chosen yet: a later step
        if (conn.skaddr, conn.start_ns) in self.handed_over:
            return
        key = connection_key(conn)
        dialogue = self.live.get(key)
        if dialogue is None:
            self._wait(key, conn)
            return
        for end in dialogue.ends:
            if (end.address, end.port) == (conn.saddr, conn.sport) and end.kernel is None:
                end.kernel = KernelView(conn)

    def _wait(self, key: FlowKey, conn: Connection) -> None:
        end_key = (key, conn.saddr, conn.sport)
        self.waiting.pop(end_key, None)  # re-inserted last: the newest stays longest
        self.waiting[end_key] = conn
        if len(self.waiting) > MAX_KERNEL_VIEWS:
            del self.waiting[next(iter(self.waiting))]
            self.forgotten += 1

    def take_over(self, now_ns: int, settle_ns: int) -> list[Dialogue]:
        """Dialogues that are over (and quiet for ``settle_ns``, so that the last records of
        both streams are in), oldest first; they leave the tracker."""
        done = self.retired
        self.retired = []
        for key, dialogue in list(self.live.items()):
            if dialogue.over(self.wait_for_time_wait) and now_ns - dialogue.last_ns >= settle_ns:
                done.append(self.live.pop(key))
        for dialogue in done:
            for end in dialogue.ends:
                if end.kernel is not None:
                    connection = end.kernel.connection
                    self.handed_over[(connection.skaddr, connection.start_ns)] = None
        while len(self.handed_over) > MAX_KERNEL_VIEWS:
            del self.handed_over[next(iter(self.handed_over))]
        return sorted(done, key=lambda d: d.start_ns)

    def take_all(self) -> list[Dialogue]:
        """Every dialogue left, as far as it got (trace is stopping)."""
        done = self.retired + list(self.live.values())
        for dialogue in done:
            dialogue.stopped_early = dialogue.stopped_early or not dialogue.over(
                self.wait_for_time_wait
            )
        self.retired = []
        self.live.clear()
        return sorted(done, key=lambda d: d.start_ns)


def _first_ns(conn: Connection) -> int:
    times = [step.at_ns for step in conn.steps if step.at_ns is not None]
    return min(times, default=conn.start_ns)


def _new_use(dialogue: Dialogue, syn: Segment) -> bool:
    """A SYN on a known 4-tuple starts a new connection unless it retransmits the first."""
    first = dialogue.segments[0]
    retransmitted = first.has(Flag.SYN) and not first.has(Flag.ACK) and first.seq == syn.seq
    return not retransmitted
