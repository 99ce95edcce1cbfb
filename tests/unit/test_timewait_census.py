"""The lean tier's timewait kills and sockets, inferred from the ground truth's census."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, generate_latest

from synfin.engine.states import KernelState, State
from synfin.exporter.groundtruth import Sample, Sampler
from synfin.exporter.kernel_metrics import KernelCollector, documented_transitions
from synfin.exporter.timewait_census import (
    EXPIRIES,
    HANDOVERS,
    KILLED,
    UNTRACKED,
    TimewaitCensus,
)
from synfin.records.addresses import AF_INET, AF_INET6
from synfin.records.counters import Counters

TIME_WAIT, FIN_WAIT2 = int(KernelState.TIME_WAIT), int(KernelState.FIN_WAIT2)
HANDED_TW, EXPIRED = HANDOVERS[1], EXPIRIES[0]


def census(handed: int, expired: int, alive: int, untracked: int = 0) -> Sample:
    """A census of every namespace, with synfin's IPv4 timewait counters read just before."""
    snapshot = {(HANDED_TW, AF_INET): handed, (EXPIRED, AF_INET): expired}
    if untracked:
        snapshot[(UNTRACKED, AF_INET)] = untracked
    return Sample(timewait=Tally({(TIME_WAIT, AF_INET): alive}), snapshot=snapshot, ok=True)


def test_kills_are_hand_overs_neither_expired_nor_alive() -> None:
    sampler = Sampler("all")
    ledger = TimewaitCensus(sampler)
    sampler.latest = census(handed=0, expired=0, alive=5)  # 5 from before synfin started
    assert ledger.apply(Counters()).timewait.get((KILLED, AF_INET), 0) == 0
    # 10 handed over since; 2 expired; 3 of the old ones expired (untracked); 7 alive now.
    sampler.latest = census(handed=10, expired=2, alive=7, untracked=3)
    # Alive: 10 - 2 - killed_new + (5 - 3 - killed_old) = 7  ->  killed = 3.
    applied = ledger.apply(Counters())
    assert applied.timewait[(KILLED, AF_INET)] == 3
    assert applied.sockets == {(TIME_WAIT, AF_INET): 7}
    assert documented_transitions(applied)[(State.TIME_WAIT, State.CLOSED, AF_INET)] == 3 + 0


def test_kills_never_go_down() -> None:
    sampler = Sampler("all")
    ledger = TimewaitCensus(sampler)
    sampler.latest = census(handed=0, expired=0, alive=0)
    ledger.apply(Counters())
    sampler.latest = census(handed=10, expired=0, alive=6)
    assert ledger.apply(Counters()).timewait[(KILLED, AF_INET)] == 4
    # A census racing new hand-overs sees more alive than the counters admit: held at 4.
    sampler.latest = census(handed=10, expired=0, alive=8)
    assert ledger.apply(Counters()).timewait[(KILLED, AF_INET)] == 4


def test_the_census_adds_timewait_sockets_to_full_ones() -> None:
    sampler = Sampler("all")
    ledger = TimewaitCensus(sampler)
    sampler.latest = Sample(
        timewait=Tally({(FIN_WAIT2, AF_INET6): 2, (TIME_WAIT, AF_INET6): 4}),
        snapshot={},
        ok=True,
    )
    full = Counters(sockets={(FIN_WAIT2, AF_INET6): 1}, timewait_sockets_known=False)
    applied = ledger.apply(full)
    assert applied.sockets == {(FIN_WAIT2, AF_INET6): 3, (TIME_WAIT, AF_INET6): 4}
    assert applied.timewait_sockets_known


def test_without_a_census_of_every_namespace_nothing_is_inferred() -> None:
    for scope in ("host", "off"):
        sampler = Sampler(scope)
        sampler.latest = census(handed=10, expired=0, alive=0)
        unknown = Counters(timewait_sockets_known=False)
        assert TimewaitCensus(sampler).apply(unknown) is unknown
    failed = Sampler("all")
    failed.latest = Sample(ok=False, snapshot={})
    assert not TimewaitCensus(failed).available


def test_unknown_timewait_sockets_are_absent_not_zero() -> None:
    def time_wait_lines(counters: Counters) -> list[str]:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(KernelCollector(lambda: counters))
        text = generate_latest(registry).decode()
        return [
            line
            for line in text.splitlines()
            if line.startswith("synfin_tcp_connections{") and 'state="time_wait"' in line
        ]

    assert len(time_wait_lines(Counters())) == 2  # both families, 0 each
    assert time_wait_lines(Counters(timewait_sockets_known=False)) == []
