"""Fixtures of the integration tests: the real probe, loaded once per session, and test hosts
in network namespaces.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from synfin.kernel.state_probe import ProbeOptions, TcpProbe
from synfin.lab.hosts import HostPair
from synfin.records.events import EVENT_LAYOUT, Event, from_fields
from tests.peer.lab import Scripted

pytest.register_assert_rewrite("tests.scenario_checks")


class Recorder:
    """Collects the probe's records; `wait_for` polls until a condition holds or times out."""

    def __init__(self, probe: TcpProbe) -> None:
        self.probe = probe
        self.records: list[tuple[object, ...]] = []  # each unpacked by EVENT_LAYOUT
        probe.open_stream(self.records.extend, EVENT_LAYOUT)

    def reset(self, ports: tuple[int, ...] = (), family: int = 0) -> None:
        self.probe.set_filter(ports, family)
        self.probe.drain()
        self.records.clear()

    def events(self) -> list[Event]:
        return [from_fields(record) for record in self.records]

    def missed_runs(self) -> int:
        """Runs of the probe's programs the kernel skipped so far, every hook together."""
        return sum(self.probe.missed_runs().values())

    def wait_for(self, done: Callable[[list[Event]], bool], timeout: float = 10.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        while True:
            self.probe.poll(50)
            events = self.events()
            if done(events) or time.monotonic() > deadline:
                return events


@pytest.fixture(scope="session")
def state_probe() -> Iterator[TcpProbe]:
    with TcpProbe(ProbeOptions()) as probe:
        yield probe


@pytest.fixture(scope="session")
def recorder(state_probe: TcpProbe) -> Recorder:
    return Recorder(state_probe)


@pytest.fixture(scope="session")
def hosts() -> Iterator[HostPair]:
    with HostPair() as pair:
        yield pair


_next_port = iter(range(20000, 30000))


@pytest.fixture
def port() -> int:
    """A port no other test in this session uses, so its events are this test's alone."""
    return next(_next_port)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed scripted-peer test's rerun (scripts/test.sh) runs the scripts again: the
    session's cached outcomes would fail it the same way whatever happened the first time."""
    report = (yield).get_result()  # type: ignore[attr-defined]
    scripted = getattr(item, "funcargs", {}).get("scripted")
    if report.failed and isinstance(scripted, Scripted):
        scripted.cache.clear()


@pytest.fixture(scope="session")
def scripted(recorder: Recorder) -> Scripted:
    """Runs a scripted-peer test's script in its own namespace (tun device, no peer kernel)
    and gathers what the kernel and synfin said about it (tests/peer/)."""
    return Scripted(recorder)
