"""Every scenario against the real kernel: the documented path and classification of both
ends, and the engine's counts against the kernel's own Tcp counters in each namespace.

SYNFIN_RECORD_FIXTURES=1 rewrites tests/fixtures/scenarios/ from these runs (the recordings
tests/unit/test_replay.py replays).
"""

from __future__ import annotations

import os

import pytest

from synfin.engine.reconcile import Reconciler, Scope
from synfin.engine.states import State
from synfin.kernel.sock_diag import census
from synfin.lab.hosts import HostPair
from synfin.lab.scenarios import Scenario, snmp_counters
from tests.paths import FIXTURES
from tests.scenario_checks import (
    COMPARED_COUNTERS,
    SCENARIO_CASES,
    check_connections,
    connections_done,
    run_engine,
    write_recording,
)

from .conftest import Recorder

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

FIXTURES = FIXTURES / "scenarios"


def namespace_inode(namespace: str) -> int:
    return os.stat(f"/run/netns/{namespace}").st_ino


def deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in COMPARED_COUNTERS}


@pytest.mark.parametrize(("scenario", "family"), SCENARIO_CASES)
def test_scenario(
    recorder: Recorder,
    hosts: HostPair,
    port: int,
    scenario: Scenario,
    family: int,
    request: pytest.FixtureRequest,
) -> None:
    recorder.reset(ports=(port,))
    namespaces = {"client": hosts.client.namespace, "server": hosts.server.namespace}
    before = {role: snmp_counters(ns) for role, ns in namespaces.items()}
    missed_before = recorder.missed_runs()

    scenario.run(hosts, family, port)

    described = recorder.probe.description()
    events = recorder.wait_for(lambda evs: connections_done(run_engine(evs, described), scenario))
    after = {role: snmp_counters(ns) for role, ns in namespaces.items()}
    run = run_engine(events, described)
    if not connections_done(run, scenario):  # say what came, for a failure seen only in CI
        came = "; ".join(
            f"{e.sport}>{e.dport} {e.kind.name} {e.oldstate}->{e.newstate}" for e in events
        )
        missed = recorder.missed_runs() - missed_before
        pytest.fail(f"unfinished; {missed} probe runs skipped; events: {came}", pytrace=False)

    check_connections(run, scenario)
    for role, namespace in namespaces.items():
        kernel = deltas(before[role], after[role])
        expected = {name: scenario.snmp.get(role, {}).get(name, 0) for name in COMPARED_COUNTERS}
        assert kernel == expected, f"{role}: the kernel's own counters moved unexpectedly"
        counted = run.engine.snmp.get(namespace_inode(namespace))
        engine_counts = {
            name: getattr(counted, attr) if counted else 0
            for name, attr in COMPARED_COUNTERS.items()
        }
        if not described.capabilities.get("socketless resets", True):
            # Before Linux 6.10 a RST sent without a full socket is not traced: the engine
            # sees a part of OutRsts (docs/kernels.md).
            assert engine_counts.pop("OutRsts") <= kernel.pop("OutRsts")
        assert engine_counts == kernel, f"{role}: engine and kernel disagree"

    # Ground truth: the sockets still alive (TIME-WAIT ones) as the kernel lists them.
    inodes = frozenset(namespace_inode(ns) for ns in namespaces.values())
    differences, compared = Reconciler(
        run.engine, census, Scope(ports=frozenset({port}), netns=inodes)
    ).check()
    assert differences == [], f"engine and sock_diag disagree over {compared} sockets"
    sides = [scenario.client, scenario.server]
    assert compared == sum(1 for side in sides if side and side.path[-1] is State.TIME_WAIT)

    client = run.find("active")
    assert client is not None and client.classification is not None
    retransmitted = after["client"]["RetransSegs"] - before["client"]["RetransSegs"]
    if scenario.only_syn_retransmits:
        assert client.classification.syn_retransmits == retransmitted
    if client.classification.result == "timeout":
        assert retransmitted > 0

    if os.environ.get("SYNFIN_RECORD_FIXTURES"):
        write_recording(FIXTURES / f"{request.node.callspec.id}.jsonl", events, described)
