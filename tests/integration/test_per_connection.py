"""--per-connection against the real kernel: for every scenario, a probe sending one record per
socket end tells each end's story as the per-step probe, attached at the same time, does.

SYNFIN_RECORD_FIXTURES=1 writes both streams of each run to tests/fixtures/connections/
(tests/unit/test_per_connection.py replays them).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from synfin.kernel.state_probe import ProbeOptions, TcpProbe
from synfin.lab.hosts import HostPair
from synfin.lab.scenarios import Scenario
from synfin.records import recording
from synfin.records.connections import (
    CONNECTION_LAYOUT,
    ConnectionRecord,
    connection_from_fields,
)
from tests.paths import FIXTURES
from tests.scenario_checks import SCENARIO_CASES, connections_done, run_engine, write_recording
from tests.stories import assert_same_story, lines_from_connections, lines_from_events

from .conftest import Recorder

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

FIXTURES = FIXTURES / "connections"
# The same kernel moment, stamped by two probes' programs running one after the other.
TOLERANCE_NS = 5_000_000


class ConnectionRecorder:
    def __init__(self, probe: TcpProbe) -> None:
        self.probe = probe
        self.records: list[tuple[object, ...]] = []
        probe.open_stream(self.records.extend, CONNECTION_LAYOUT)

    def reset(self, port: int) -> None:
        self.probe.set_filter((port,))
        self.probe.drain()
        self.records.clear()

    def connections(self) -> list[ConnectionRecord]:
        self.probe.poll(20)
        return [connection_from_fields(fields) for fields in self.records]


@pytest.fixture(scope="module")
def per_connection() -> Iterator[ConnectionRecorder]:
    with TcpProbe(ProbeOptions(per_connection=True)) as probe:
        yield ConnectionRecorder(probe)


def end_timewait(hosts: HostPair, port: int) -> None:
    """Kill the scenario's timewait sockets: their ends are over now, not in a minute."""
    for host in (hosts.client, hosts.server):
        subprocess.run(
            ["ip", "netns", "exec", host.namespace, "ss", "-K", "-tn", "state", "time-wait",
             f"( sport = :{port} or dport = :{port} )"],
            capture_output=True, check=False,
        )  # fmt: skip


@pytest.mark.parametrize(("scenario", "family"), SCENARIO_CASES)
def test_both_stream_modes_tell_the_same_story(
    recorder: Recorder,
    per_connection: ConnectionRecorder,
    hosts: HostPair,
    port: int,
    scenario: Scenario,
    family: int,
    request: pytest.FixtureRequest,
) -> None:
    recorder.reset(ports=(port,))
    per_connection.reset(port)
    scenario.run(hosts, family, port)
    described = recorder.probe.description()
    recorder.wait_for(lambda evs: connections_done(run_engine(evs, described), scenario))
    end_timewait(hosts, port)

    def every_end_over(events: list) -> bool:
        run = run_engine(events, described)
        return bool(run.connections) and all(conn.finished for conn in run.connections)

    events = recorder.wait_for(every_end_over)
    by_step = lines_from_events(events, described)
    deadline = time.monotonic() + 10
    while True:
        records = per_connection.connections()
        by_connection, view = lines_from_connections(records, described)
        if len(by_connection) >= len(by_step) or time.monotonic() > deadline:
            break

    assert by_step, "the per-step stream finished no connection"
    assert per_connection.probe.records_lost() == 0
    assert_same_story(by_step, by_connection, TOLERANCE_NS)
    # Each shape's template reproduced the engine's line (else the engine read the record).
    assert view.read_by_engine == sum(1 for r in records if r.part)
    if os.environ.get("SYNFIN_RECORD_FIXTURES"):
        name = request.node.callspec.id
        write_recording(FIXTURES / f"{name}.events.jsonl", events, described)
        connections = FIXTURES / f"{name}.connections.jsonl"
        write_recording(connections, records, described, recording.CONNECTIONS)
