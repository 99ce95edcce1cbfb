"""Recorded kernel streams of every scenario, replayed through the engine without BPF:
the same paths, classifications and counts as live (tests/integration/test_scenarios.py
records them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synfin.lab.scenarios import SCENARIOS
from synfin.records.recording import Reader
from tests.paths import FIXTURES
from tests.scenario_checks import COMPARED_COUNTERS, check_connections, run_engine

FIXTURES = sorted((FIXTURES / "scenarios").glob("*.jsonl"))


def scenario_name(path: Path) -> str:
    return path.stem.rsplit("-", 1)[0]


def test_every_scenario_has_recordings_for_both_families() -> None:
    recorded = {path.stem for path in FIXTURES}
    expected = {f"{name}-{family}" for name in SCENARIOS for family in ("ipv4", "ipv6")}
    assert recorded == expected


@pytest.mark.parametrize("path", FIXTURES, ids=[path.stem for path in FIXTURES])
def test_replay_reproduces_the_live_results(path: Path) -> None:
    scenario = SCENARIOS[scenario_name(path)]
    with Reader(path) as reader:
        run = run_engine(reader, reader.header.description)

    check_connections(run, scenario)
    expected = {name: sum(scenario.snmp.get(role, {}).get(name, 0) for role in ("client", "server"))
                for name in COMPARED_COUNTERS}  # fmt: skip
    counted = {name: sum(getattr(c, attr) for c in run.engine.snmp.values())
               for name, attr in COMPARED_COUNTERS.items()}  # fmt: skip
    assert counted == expected
