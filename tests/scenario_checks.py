"""Checks shared by the live scenario tests and the replay of their recordings."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from synfin.engine.connection import Connection
from synfin.engine.lifecycle import Engine
from synfin.lab.scenarios import SCENARIOS, Expected, Scenario
from synfin.records import recording
from synfin.records.connections import ConnectionRecord
from synfin.records.description import KernelDescription
from synfin.records.events import Event
from synfin.units import MONOTONIC_TO_WALL_NS

# /proc/net/snmp Tcp counter -> SnmpCounts attribute
COMPARED_COUNTERS = {
    "ActiveOpens": "active_opens",
    "PassiveOpens": "passive_opens",
    "AttemptFails": "attempt_fails",
    "EstabResets": "estab_resets",
    "OutRsts": "out_rsts",
}


@dataclass
class Run:
    """An engine fed a stream, and every connection its outputs mentioned, in order."""

    engine: Engine
    connections: list[Connection] = field(default_factory=list)

    def find(self, opened: str) -> Connection | None:
        matches = [
            c for c in self.connections if c.classification and c.classification.open == opened
        ]
        return matches[-1] if matches else None


def run_engine(events: Iterable[Event], description: KernelDescription | None = None) -> Run:
    run = Run(Engine(description))
    for event in events:
        for output in run.engine.feed(event):
            conn = output.connection
            if conn is not None and all(conn is not seen for seen in run.connections):
                run.connections.append(conn)
    return run


def side_done(conn: Connection | None, expected: Expected) -> bool:
    return (
        conn is not None
        and conn.classification is not None
        and len(conn.path()) >= len(expected.path)
    )


def connections_done(run: Run, scenario: Scenario) -> bool:
    done = side_done(run.find("active"), scenario.client)
    if scenario.server is not None:
        done = done and side_done(run.find("passive"), scenario.server)
    return done


def check_side(conn: Connection | None, expected: Expected, role: str) -> None:
    assert conn is not None, f"no {role} connection classified"
    assert tuple(conn.path()) == expected.path, f"{role} path"
    verdict = conn.classification
    assert verdict is not None
    assert (verdict.open, verdict.result, verdict.initiator, verdict.close) == (
        expected.open,
        expected.result,
        expected.initiator,
        expected.close,
    ), f"{role} classification: {verdict}"
    inferred = {(step.source, step.target) for step in conn.steps if not step.observed}
    assert inferred <= set(expected.inferable), f"{role}: steps inferred that should be observed"


def check_connections(run: Run, scenario: Scenario) -> None:
    check_side(run.find("active"), scenario.client, "client")
    if scenario.server is not None:
        check_side(run.find("passive"), scenario.server, "server")
    else:
        assert run.find("passive") is None


FAMILY_IDS = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}
# Every scenario in each family it runs in, as pytest parameters (scenario, family).
SCENARIO_CASES = [
    pytest.param(scenario, family, id=f"{name}-{FAMILY_IDS[family]}")
    for name, scenario in SCENARIOS.items()
    for family in scenario.families
]


def write_recording(
    path: Path,
    items: Iterable[Event | ConnectionRecord],
    described: KernelDescription,
    records: str = recording.EVENTS,
) -> None:
    """A fixture recording, as `synfin record` (or `record --per-connection`) writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        header = recording.Header(
            clock_offset_ns=MONOTONIC_TO_WALL_NS, description=described, records=records
        )
        writer = recording.Writer(out, header)
        for item in items:
            writer.write(item)
