"""One scripted-peer test's surroundings: its namespace, its port, the probe's stream and
counters, and what they all said once the script was over.

synfin's counters are global: another namespace's connection moving at the same moment (a
developer running other tests on the same host) lands in the same transition, reset or gauge
label. So the lab streams every event of the host, gives the engine only those of its own
namespace, and counts the others. A script that ran alongside foreign activity is run again
in a fresh namespace (``run_quietly``), so an exact comparison with the kernel's counters
does not depend on what else the host was doing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pytest

from synfin.records.events import Event
from tests.peer.observe import Deltas, EngineView, Observer, Snapshot, classified, engine_view
from tests.peer.tun import TunNetwork

if TYPE_CHECKING:
    from tests.integration.conftest import Recorder

# Ports of the scripted-peer tests: apart from the `port` fixture's 20000-29999 and the
# golden metrics' 35000-35003, so a port label never mixes two tests.
_ports = itertools.count(36000)
# The peer's own port when the local end listens (any port would do: nothing else is there).
PEER_PORT = 40000
ATTEMPTS = 3

T = TypeVar("T")


def next_port() -> int:
    return next(_ports)


@dataclass
class PeerLab:
    recorder: Recorder
    port: int
    net: TunNetwork = field(default_factory=TunNetwork)

    def __post_init__(self) -> None:
        self.observer = Observer(self.net, self.recorder.probe)
        self.before: Snapshot | None = None

    def __enter__(self) -> PeerLab:
        self.net.__enter__()
        try:
            # Connects, accepts and closes of this port get their own label.
            self.recorder.probe.set_labels([self.port])
            self.recorder.reset()  # every event of the host: see the module's docstring
            self.net.on_idle = lambda: self.recorder.probe.poll(0)
            self.lost_before = self.recorder.probe.records_lost()
            self.missed_before = self._missed_runs()
            self.before = self.observer.snapshot()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.net.close()
            self._wait_until_forgotten()
        finally:
            self.recorder.probe.set_labels([])

    def _wait_until_forgotten(self, timeout: float = 3.0) -> None:
        """Deleting a namespace kills its TIME-WAIT sockets later, from a kernel work queue:
        wait until synfin has seen every socket of this one end, so that the next script's
        global counters (the gauge above all) do not move with this one's leftovers."""
        sockets = self.recorder.probe.bpf[b"sockets"]
        deadline = time.monotonic() + timeout
        while any(entry.netns == self.net.inode for entry in sockets.values()):
            if time.monotonic() > deadline:
                return  # a socket synfin lost track of; the next script will notice any noise
            time.sleep(0.02)

    # -- the stream --------------------------------------------------------------------------

    def own(self, events: list[Event]) -> list[Event]:
        return [event for event in events if event.netns == self.net.inode]

    def lost(self) -> int:
        """Records the ring buffer had no room for since the script began (any namespace's)."""
        return self.recorder.probe.records_lost() - self.lost_before

    def _missed_runs(self) -> int:
        return sum(self.recorder.probe.missed_runs().values())

    def missed(self) -> int:
        """Runs of the probe's programs the kernel skipped since the script began (a BPF
        program was already running on that CPU, anyone's): the counters may lack them."""
        return self._missed_runs() - self.missed_before

    def foreign(self) -> list[Event]:
        """Events of other namespaces since the script began."""
        self.recorder.probe.poll(0)
        return [event for event in self.recorder.events() if event.netns != self.net.inode]

    def events(
        self, done: Callable[[EngineView], bool] | None = None, timeout: float = 5.0
    ) -> list[Event]:
        """This namespace's events, once the engine's view of them satisfies ``done``
        (default: one connection classified) or after ``timeout`` seconds."""
        done = done or classified(1)
        description = self.recorder.probe.description()

        def finished(events: list[Event]) -> bool:
            return done(engine_view(self.own(events), description))

        return self.own(self.recorder.wait_for(finished, timeout))

    # -- counters ----------------------------------------------------------------------------

    def deltas(self) -> Deltas:
        assert self.before is not None
        return self.observer.since(self.before)

    def gauge_against_census(self) -> tuple[dict[str, int], dict[str, int]]:
        assert self.before is not None
        return self.observer.gauge_against_census(self.before)


@dataclass
class Outcome(Generic[T]):
    """Everything a test asserts on, gathered while the namespace still existed."""

    family: int
    port: int
    inode: int
    script: T  # what the script returned
    events: list[Event]  # the namespace's own
    view: EngineView
    deltas: Deltas
    gauge: dict[str, int]  # synfin's per-state gauge, moved since the script began
    census: dict[str, int]  # sock_diag's sockets of the namespace, per documented state
    foreign: list[Event]  # other namespaces' events meanwhile (counters may include them)

    def kernel(self, *names: str) -> dict[str, int]:
        return self.deltas.kernel(*names)

    def synfin(self, name: str, **labels: str) -> int:
        """How much synfin's samples of ``name`` with these labels moved. Only a ``port``
        label makes it this namespace's alone; without one, see require_quiet."""
        if "port" not in labels:
            self.require_quiet()
        return int(self.deltas.synfin.sum(name, **labels))

    def require_quiet(self) -> None:
        """Skip what follows if other namespaces were active in every attempt: synfin's
        global counters then include their moves, and no exact comparison is possible."""
        if self.foreign:
            pytest.skip(
                f"{self.noise} in each of {ATTEMPTS} attempts: synfin's host-wide counters "
                "cannot be compared with this namespace's; run again on a quiet host"
            )

    @property
    def noise(self) -> str:
        """For assertion messages: whether other namespaces moved the global counters."""
        if not self.foreign:
            return "no other namespace was active"
        return f"{len(self.foreign)} events of other namespaces during the script"


def run_quietly(
    recorder: Recorder,
    script: Callable[..., T],
    family: int,
    done: Callable[[EngineView], bool] | None = None,
    timeout: float = 5.0,
    **params: object,
) -> Outcome[T]:
    """Run ``script(lab, family, **params)`` in a fresh namespace, wait for ``done``
    (default: one connection classified), gather the outcome; again (up to ATTEMPTS times)
    while another namespace was active at the same time, the stream lost records or the
    kernel skipped a run of the probe's programs (synfin_probe_missed_runs_total)."""
    description = recorder.probe.description()
    for _attempt in range(ATTEMPTS):
        with PeerLab(recorder, next_port()) as lab:
            result = script(lab, family, **params)
            events = lab.events(done, timeout)
            gauge, census = lab.gauge_against_census()
            deltas = lab.deltas()
            foreign = lab.foreign()
            lost = lab.lost()
            missed = lab.missed()
            view = engine_view(events, description)
            outcome = Outcome(
                family, lab.port, lab.net.inode, result, events, view, deltas, gauge, census,
                foreign,
            )  # fmt: skip
        if not foreign and not lost and not missed:
            return outcome
    if lost:
        # Other namespaces' events filled the ring buffer: this one's may be missing too.
        pytest.skip(f"the event stream lost {lost} records in each of {ATTEMPTS} attempts")
    if missed:
        pytest.skip(f"the kernel skipped {missed} runs of the probe in each of {ATTEMPTS} attempts")
    return outcome


@dataclass
class Scripted:
    """``scripted(script, family, **params)``: the outcome of that script, run once per
    session however many tests look at it (several tests, one defect each, share a run)."""

    recorder: Recorder
    cache: dict[tuple[object, ...], Outcome[Any]] = field(default_factory=dict)

    def __call__(
        self,
        script: Callable[..., T],
        family: int,
        done: Callable[[EngineView], bool] | None = None,
        timeout: float = 5.0,
        **params: object,
    ) -> Outcome[T]:
        key = (script, family, *sorted(params.items()))
        if key not in self.cache:
            self.cache[key] = run_quietly(self.recorder, script, family, done, timeout, **params)
        return self.cache[key]
