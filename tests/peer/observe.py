"""What the kernel and synfin say about a scripted connection.

Three views, compared by the tests:
- the kernel's own Tcp and TcpExt counters, read inside the test's namespace (exact: nothing
  else runs there);
- synfin's in-kernel counters as ``synfin run`` exports them (the KernelCollector's samples).
  They are global: transitions, resets and retransmits count every namespace on the host, so
  a test takes deltas and reads the labels its own connection can move; connects, accepts
  and closes carry a ``port`` label once the test's port is labelled;
- the engine's view of the streamed events (each connection's steps, notes and verdict).
And at quiescence synfin's per-state gauge against sock_diag's census of the namespace.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from synfin.engine.classify import Classification
from synfin.engine.connection import Connection, Noted, Step
from synfin.engine.lifecycle import Engine
from synfin.engine.states import State, documented
from synfin.exporter.kernel_metrics import KernelCollector, Labelling
from synfin.kernel import counters
from synfin.kernel.sock_diag import census
from synfin.kernel.state_probe import TcpProbe
from synfin.records import abi
from synfin.records.counters import Counters
from synfin.records.description import KernelDescription
from synfin.records.events import Event, Fact
from tests.peer.tun import TunNetwork

Labels = tuple[tuple[str, str], ...]


class Samples(dict[tuple[str, Labels], float]):
    """Metric samples by (sample name, sorted labels)."""

    def sum(self, name: str, **labels: str) -> float:
        """The sum over samples of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.items() if n == name and wanted <= set(ls))

    def having(self, name: str) -> dict[Labels, float]:
        return {labels: v for (n, labels), v in self.items() if n == name and v}

    def minus(self, before: Samples) -> Samples:
        keys = self.keys() | before.keys()
        return Samples({k: self.get(k, 0) - before.get(k, 0) for k in keys})


def samples(read: Counters) -> Samples:
    """Every sample `synfin run` would serve from these counters, with port labels."""
    collector = KernelCollector(lambda: read, Labelling(ports=True))
    return Samples(
        {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in collector.collect()
            for sample in family.samples
        }
    )


@dataclass
class Snapshot:
    tcp: dict[str, int]
    tcp_ext: dict[str, int]
    counters: Counters  # synfin's, as read from the probe's maps

    @property
    def synfin(self) -> Samples:
        return samples(self.counters)


@dataclass
class Deltas:
    """What moved between two snapshots."""

    tcp: dict[str, int]
    tcp_ext: dict[str, int]
    synfin: Samples
    # synfin's timewait counters (TW_* in probes/synfin_events.h) by name, both families:
    # they reach /metrics only folded into transitions.
    timewait: dict[str, int]

    def kernel(self, *names: str) -> dict[str, int]:
        """Tcp and TcpExt counters by name (Tcp first), zeros included."""
        return {name: self.tcp.get(name, self.tcp_ext.get(name, 0)) for name in names}


def _minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: value - before.get(name, 0) for name, value in after.items()}


_TIMEWAIT_NAMES = {
    value: name
    for name, value in abi.events().enum("timewait_counter").items()
    if not name.startswith("N_")
}


def _timewait(read: Counters) -> dict[str, int]:
    totals: Counter[str] = Counter(dict.fromkeys(_TIMEWAIT_NAMES.values(), 0))
    for (counter, _family), n in read.timewait.items():
        totals[_TIMEWAIT_NAMES.get(counter, f"counter_{counter}")] += n
    return dict(totals)


@dataclass
class Observer:
    """Snapshots of one test's namespace and of synfin's counters."""

    net: TunNetwork
    probe: TcpProbe

    def snapshot(self) -> Snapshot:
        tcp, tcp_ext = self.net.proc_net()
        return Snapshot(tcp, tcp_ext, counters.read(self.probe))

    def since(self, before: Snapshot) -> Deltas:
        now = self.snapshot()
        return Deltas(
            _minus(now.tcp, before.tcp),
            _minus(now.tcp_ext, before.tcp_ext),
            now.synfin.minus(before.synfin),
            _minus(_timewait(now.counters), _timewait(before.counters)),
        )

    def census(self) -> Counter[str]:
        """The namespace's sockets per documented state, as sock_diag lists them now."""
        return Counter(documented(s.state).label for s in census(frozenset({self.net.inode})))

    def gauge_against_census(
        self, before: Snapshot, settle: float = 1.0
    ) -> tuple[dict[str, int], dict[str, int]]:
        """(synfin's gauge moves since ``before``, the census), once they agree or after
        ``settle`` seconds: a timewait socket's end reaches the gauge a moment late (its
        timer's cancel is settled at the next timer event on that CPU)."""
        deadline = time.monotonic() + settle
        while True:
            moved = samples(counters.read(self.probe)).minus(before.synfin)
            gauge = {
                dict(labels)["state"]: int(v)
                for labels, v in _by_state(moved.having("synfin_tcp_connections")).items()
            }
            kernel = dict(self.census())
            if gauge == kernel or time.monotonic() > deadline:
                return gauge, kernel
            time.sleep(0.05)


def _by_state(gauge: dict[Labels, float]) -> dict[Labels, float]:
    """The gauge summed over families, keyed by its state label alone."""
    total: Counter[Labels] = Counter()
    for labels, value in gauge.items():
        total[(("state", dict(labels)["state"]),)] += value
    return {labels: v for labels, v in total.items() if v}


# -- the engine ---------------------------------------------------------------------------------


@dataclass
class Seen:
    """One socket as the engine followed it, with the notes it wrote about it."""

    connection: Connection
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> list[State]:
        return self.connection.path()

    @property
    def steps(self) -> list[Step]:
        return self.connection.steps

    @property
    def verdict(self) -> Classification | None:
        return self.connection.classification

    @property
    def listener(self) -> bool:
        return bool(self.connection.facts & Fact.LISTENED)

    def step(self, source: State, target: State) -> Step:
        found = [s for s in self.steps if (s.source, s.target) == (source, target)]
        assert found, f"no step {source} -> {target} in {self.describe()}"
        return found[0]

    def describe(self) -> str:
        steps = ", ".join(
            f"{s.source}->{s.target}{'' if s.observed else ' (inferred)'}"
            + (f" [{s.how}]" if s.how else "")
            for s in self.steps
        )
        return f"steps: {steps}; notes: {self.notes}; verdict: {self.verdict}"


@dataclass
class EngineView:
    connections: list[Seen]
    stray_notes: list[str]  # about no socket synfin follows (a reset without a socket)

    def sockets(self) -> list[Seen]:
        """The connections, listeners left out."""
        return [seen for seen in self.connections if not seen.listener]

    def only(self) -> Seen:
        found = self.sockets()
        assert len(found) == 1, f"expected one connection, engine saw {len(found)}: " + "; ".join(
            s.describe() for s in found
        )
        return found[0]


def engine_view(events: Iterable[Event], description: KernelDescription | None) -> EngineView:
    engine = Engine(description)
    seen: dict[int, Seen] = {}
    stray: list[str] = []
    for event in events:
        for output in engine.feed(event):
            conn = output.connection
            if conn is None:
                if isinstance(output, Noted):
                    stray.append(output.text)
                continue
            entry = seen.setdefault(id(conn), Seen(conn))
            if isinstance(output, Noted):
                entry.notes.append(output.text)
    return EngineView(list(seen.values()), stray)


def classified(count: int) -> Callable[[EngineView], bool]:
    """Done when ``count`` connections (listeners aside) have their verdict."""
    return lambda view: sum(1 for s in view.sockets() if s.verdict is not None) >= count
