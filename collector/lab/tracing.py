"""``synfin lab --trace``: each scenario drawn as the textbook ladder right after it ran.

The state probe sees every namespace; the segment capture runs in the lab's client namespace,
so each segment is seen once, leaving or arriving. A scenario's connections are drawn once
both streams have gone quiet; TIME-WAIT is not waited out (60 s), so the 2MSL check says so.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from synfin.engine.lifecycle import Engine
from synfin.kernel.namespaces import NETNS_DIR
from synfin.kernel.segment_probe import CaptureOptions, SegmentCapture
from synfin.kernel.state_probe import ProbeOptions, TcpProbe
from synfin.lab.hosts import HostPair
from synfin.ladder.layout import Ladder
from synfin.ladder.tracer import Tracer
from synfin.records.events import EVENT_FORMAT
from synfin.records.pump import Pump, Stream
from synfin.records.segments import SEGMENT_FORMAT

QUIET_S = 0.4  # no record from either stream for this long: the scenario's segments are in
LONGEST_S = 5.0


class LabTracer:
    """Both probes attached for the lab's ports; ``draw_pending`` after each scenario."""

    def __init__(self, hosts: HostPair, ports: range, draw: Callable[[Ladder], None]) -> None:
        self._probe = TcpProbe(ProbeOptions())
        try:
            options = CaptureOptions(netns=NETNS_DIR / hosts.client.namespace)
            self._capture = SegmentCapture(options)
        except BaseException:
            self._probe.close()
            raise
        engine = Engine(self._probe.description())
        self.tracer = Tracer(draw=draw, engine=engine, wait_for_time_wait=False)
        for probe in (self._probe, self._capture):
            probe.set_filter(ports)
        self._pump = Pump(
            [
                Stream(self._probe, EVENT_FORMAT, self.tracer.on_event),
                Stream(self._capture, SEGMENT_FORMAT, self.tracer.on_segment),
            ],
            poll_ms=20,
        )

    def draw_pending(self) -> None:
        """Wait for the last records of the scenario just played, then draw its connections."""
        self._pump.run_until_quiet(QUIET_S, LONGEST_S)
        self.tracer.finish()

    @property
    def lost(self) -> int:
        return self._pump.lost()

    def close(self) -> None:
        self._capture.close()
        self._probe.close()

    def __enter__(self) -> LabTracer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
