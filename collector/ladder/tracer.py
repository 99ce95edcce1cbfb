"""``synfin trace``'s engine room: two record streams in, finished ladders out.

Kernel state events go through the lifecycle engine; captured segments go straight to the
tracker, which joins both by 4-tuple and time (collector/ladder/dialogue.py). A connection is drawn
once it is over and both streams have been quiet about it for a moment, so records that
were still in the other ring buffer are not missed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from synfin.engine.connection import Output
from synfin.engine.lifecycle import Engine
from synfin.ladder.dialogue import Dialogue, Tracker
from synfin.ladder.layout import Ladder, build
from synfin.records.addresses import Network, any_in
from synfin.records.events import Event
from synfin.records.segments import Segment

# How long a finished connection waits for stragglers from the other stream before it is drawn.
SETTLE_NS = 150_000_000


@dataclass(frozen=True)
class TraceFilter:
    """Which connections to draw (ports and family are filtered in the kernel already)."""

    networks: tuple[Network, ...] = ()
    pid: int | None = None

    def admits(self, dialogue: Dialogue) -> bool:
        if not dialogue.segments:
            return False
        addresses = [end.address for end in dialogue.ends]
        if self.networks and not any_in(dialogue.family, addresses, self.networks):
            return False
        if self.pid is not None:
            pids = {end.kernel.connection.owner_pid for end in dialogue.ends if end.kernel}
            if self.pid not in pids:
                return False
        return True


@dataclass
class TraceCounters:
    events: int = 0
    segments: int = 0
    drawn: int = 0


@dataclass
class Tracer:
    """Feed it records; it calls ``draw`` with each connection's ladder when it is over."""

    draw: Callable[[Ladder], None]
    engine: Engine = field(default_factory=Engine)
    shown: TraceFilter = field(default_factory=TraceFilter)
    wait_for_time_wait: bool = True
    limit: int | None = None  # stop after this many connections
    counters: TraceCounters = field(default_factory=TraceCounters)
    # Also given every engine output (the web view shares the engine with its ladders).
    on_output: Callable[[Output], None] | None = None

    def __post_init__(self) -> None:
        self.tracker = Tracker(wait_for_time_wait=self.wait_for_time_wait)

    @property
    def done(self) -> bool:
        return self.limit is not None and self.counters.drawn >= self.limit

    def on_event(self, event: Event) -> None:
        self.counters.events += 1
        for output in self.engine.feed(event):
            self.tracker.on_output(output)
            if self.on_output is not None:
                self.on_output(output)

    def on_segment(self, segment: Segment) -> None:
        self.counters.segments += 1
        self.tracker.on_segment(segment)

    def flush(self, now_ns: int) -> None:
        """Draw every connection that is over."""
        self._draw_all(self.tracker.take_over(now_ns, SETTLE_NS))

    def finish(self) -> None:
        """Trace is stopping: draw what is left, as far as each connection got."""
        self._draw_all(self.tracker.take_all())

    def _draw_all(self, dialogues: list[Dialogue]) -> None:
        for dialogue in dialogues:
            if self.done:
                return
            if self.shown.admits(dialogue):
                self.counters.drawn += 1
                self.draw(build(dialogue))
