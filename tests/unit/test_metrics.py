"""The metrics collector: documented mapping, golden /metrics text from recorded kernel
counters, and promtool's lint.

SYNFIN_UPDATE_GOLDEN=1 re-records tests/fixtures/counters/ from a live run (the recording
test below) and rewrites the golden text from it.
"""

from __future__ import annotations

import os
import subprocess

from prometheus_client import CollectorRegistry, generate_latest

from synfin.engine.states import State
from synfin.exporter.kernel_metrics import (
    TW_END_EXPIRED,
    TW_END_UNSEEN_ENTRY,
    TW_HANDOVER_FIN_WAIT2,
    TW_HANDOVER_TIME_WAIT,
    KernelCollector,
    Labelling,
    documented_transitions,
)
from synfin.records.addresses import AF_INET, AF_INET6
from synfin.records.counters import Counters
from synfin.records.events import Fact
from tests.paths import FIXTURES

FIXTURES = FIXTURES / "counters"
RECORDED = FIXTURES / "scenarios.json"
GOLDEN = FIXTURES / "scenarios.prom"
UPDATE = bool(os.environ.get("SYNFIN_UPDATE_GOLDEN"))


def render(counters: Counters, labelling: Labelling) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KernelCollector(lambda: counters, labelling))
    return generate_latest(registry)


def test_timewait_hand_overs_are_not_closes() -> None:
    fw2, close, tw = 5, 7, 6
    counters = Counters(
        transitions={(fw2, close, AF_INET): 3},  # three orphaned active closes
        timewait={
            (TW_HANDOVER_FIN_WAIT2, AF_INET): 2,  # two before the peer's FIN
            (TW_HANDOVER_TIME_WAIT, AF_INET): 1,  # one after it
            (TW_END_UNSEEN_ENTRY, AF_INET): 2,  # the two entered TIME-WAIT unseen
            (TW_END_EXPIRED, AF_INET): 3,
        },
    )
    assert documented_transitions(counters) == {
        (State.FIN_WAIT_2, State.TIME_WAIT, AF_INET): 3,
        (State.TIME_WAIT, State.CLOSED, AF_INET): 3,
    }
    assert (State.FIN_WAIT_2, State.CLOSED, AF_INET) not in documented_transitions(counters)
    assert tw == 6


def test_endings_are_classified_by_the_same_rules() -> None:
    refused = Fact.ACTIVE_OPEN | Fact.RESET_RECEIVED | Fact.CLOSED
    closed = Fact.PASSIVE_OPEN | Fact.ESTABLISHED | Fact.REMOTE_FIN_FIRST | Fact.CLOSED
    counters = Counters(endings={(int(refused), AF_INET6, 443): 2, (int(closed), AF_INET, 0): 5})
    text = render(counters, Labelling(ports=True)).decode()
    assert 'synfin_tcp_connects_total{family="ipv6",port="443",result="refused"} 2.0' in text
    assert (
        'synfin_tcp_closes_total{family="ipv4",initiator="remote",kind="graceful",port="other"} 5.0'
        in text
    )


def test_golden_metrics_from_recorded_counters() -> None:
    text = render(Counters.load(RECORDED), Labelling(ports=True))
    if UPDATE:
        GOLDEN.write_bytes(text)
    assert text == GOLDEN.read_bytes()


def test_golden_metrics_pass_promtool() -> None:
    lint = subprocess.run(
        ["promtool", "check", "metrics"],
        input=GOLDEN.read_bytes(),
        capture_output=True,
        check=False,
    )
    assert lint.returncode == 0 and lint.stdout == lint.stderr == b"", lint


def test_counters_survive_json() -> None:
    counters = Counters.load(RECORDED)
    assert Counters.from_json(counters.to_json()) == counters
    assert counters.missed_runs["sock:inet_sock_set_state"] == 0  # a hook's name stays a name


def test_missed_runs_are_exported_per_hook() -> None:
    counters = Counters(missed_runs={"sock:inet_sock_set_state": 3, "tcp:tcp_destroy_sock": 0})
    text = render(counters, Labelling()).decode()
    assert 'synfin_probe_missed_runs_total{hook="sock:inet_sock_set_state"} 3.0' in text
    assert 'synfin_probe_missed_runs_total{hook="tcp:tcp_destroy_sock"} 0.0' in text
