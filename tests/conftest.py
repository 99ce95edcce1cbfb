"""Shared fixtures: the real probe, loaded once per session, and test hosts in namespaces.

Tests that need root and BPF skip with the reason on machines that cannot give them; in CI
here they run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest

from collector.events import Event, decode
from collector.netns import HostPair
from collector.probes import ProbeOptions, TcpProbe

pytest.register_assert_rewrite("tests.scenario_checks")


def bpf_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to load BPF programs and create network namespaces"
    try:
        import bcc  # noqa: F401, PLC0415
    except ImportError:
        return "bcc is not importable (run scripts/setup.sh and use its .venv)"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = bpf_unavailable_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("bpf") or item.get_closest_marker("netns"):
            item.add_marker(pytest.mark.skip(reason=reason))


class Recorder:
    """Collects the probe's records; `wait_for` polls until a condition holds or times out."""

    def __init__(self, probe: TcpProbe) -> None:
        self.probe = probe
        self.records: list[bytes] = []
        probe.open_stream(self.records.append)

    def reset(self, ports: tuple[int, ...] = (), family: int = 0) -> None:
        self.probe.set_filter(ports, family)
        self.probe.drain()
        self.records.clear()

    def events(self) -> list[Event]:
        return [decode(record) for record in self.records]

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
