"""The metrics collector: documented mapping, golden /metrics text from recorded kernel
counters, and promtool's lint.

SYNFIN_UPDATE_GOLDEN=1 re-records tests/fixtures/counters/ from a live run (the recording
test below) and rewrites the golden text from it.
"""

from __future__ import annotations

import os
import socket

import pytest

from synfin.kernel import counters as counters_module
from synfin.kernel.state_probe import TIMERS, ProbeOptions, TcpProbe
from synfin.lab.hosts import HostPair
from synfin.lab.scenarios import SCENARIOS
from tests.paths import FIXTURES

FIXTURES = FIXTURES / "counters"
RECORDED = FIXTURES / "scenarios.json"
UPDATE = bool(os.environ.get("SYNFIN_UPDATE_GOLDEN"))
GOLDEN_PORTS = (35000, 35001, 35002, 35003)


@pytest.mark.bpf
@pytest.mark.netns
def test_record_counters_of_real_scenarios(hosts: HostPair) -> None:
    """A fresh probe's counters after known scenarios (the golden test's input when updating).
    The timers tier: it follows timewait sockets itself, so the golden text has their gauge."""
    with TcpProbe(ProbeOptions(stream_events=False, tier=TIMERS)) as probe:
        probe.set_labels(GOLDEN_PORTS)
        names = ["client-closes", "refused", "reset-abort", "simultaneous-close"]
        for name, port in zip(names, GOLDEN_PORTS, strict=True):
            SCENARIOS[name].run(hosts, socket.AF_INET, port)
        recorded = counters_module.read(probe)
    opens = {
        (kind, port): n
        for (kind, _family, port), n in recorded.opens.items()
        if port in GOLDEN_PORTS
    }
    assert opens == {
        (0, 35000): 1,
        (1, 35000): 1,
        (0, 35002): 1,
        (1, 35002): 1,
        (0, 35003): 1,
        (1, 35003): 1,
    }
    if UPDATE:
        FIXTURES.mkdir(parents=True, exist_ok=True)
        RECORDED.write_text(recorded.to_json() + "\n")
