"""Prometheus metrics from the probe's counters, in the textbook's terms.

A ``KernelCollector`` takes a source of ``Counters`` (the live probe, or a recorded snapshot)
and, on every scrape, yields fresh metric families: documented states as lower snake_case
label values, base units, no label with unbounded values (no addresses, no PIDs; a port only
from the configured allow-list). See docs/metrics.md for each metric.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from synfin.engine.classify import (
    LISTENER,
    OPEN_ACTIVE,
    OPEN_SIMULTANEOUS,
    RESULT_ESTABLISHED,
    Ending,
    classify,
)
from synfin.engine.states import KernelState, State, documented
from synfin.exporter.probe_health import probe_health
from synfin.records import abi
from synfin.records.addresses import AF_INET, AF_INET6, family_name
from synfin.records.counters import HIST_SLOTS, Counters, Histogram
from synfin.records.events import Fact

_HEADER = abi.events()
OPEN_CONNECTED = _HEADER["OPEN_CONNECTED"]
ROLES = {_HEADER["ROLE_ACTIVE"]: "client", _HEADER["ROLE_PASSIVE"]: "server"}
RETRANSMIT_KINDS = {
    _HEADER["RETRANSMIT_SYN"]: "syn",
    _HEADER["RETRANSMIT_SYNACK"]: "synack",
    _HEADER["RETRANSMIT_DATA"]: "data",
}
TW_HANDOVER_FIN_WAIT2 = _HEADER["TW_HANDOVER_FIN_WAIT2"]
TW_HANDOVER_TIME_WAIT = _HEADER["TW_HANDOVER_TIME_WAIT"]
TW_HANDOVER_CLOSING = _HEADER["TW_HANDOVER_CLOSING"]
TW_REARMED = _HEADER["TW_REARMED"]
TW_END_EXPIRED = _HEADER["TW_END_EXPIRED"]
TW_END_KILLED = _HEADER["TW_END_KILLED"]
TW_END_FIN_WAIT2_EXPIRED = _HEADER["TW_END_FIN_WAIT2_EXPIRED"]
TW_END_FIN_WAIT2_KILLED = _HEADER["TW_END_FIN_WAIT2_KILLED"]
TW_END_UNSEEN_ENTRY = _HEADER["TW_END_UNSEEN_ENTRY"]

# The documented transition each timewait counter reveals (probes/synfin_events.h).
TIMEWAIT_STEPS: dict[int, tuple[State, State]] = {
    TW_HANDOVER_TIME_WAIT: (State.FIN_WAIT_2, State.TIME_WAIT),
    TW_HANDOVER_CLOSING: (State.CLOSING, State.TIME_WAIT),
    TW_REARMED: (State.FIN_WAIT_2, State.TIME_WAIT),
    TW_END_UNSEEN_ENTRY: (State.FIN_WAIT_2, State.TIME_WAIT),  # inferred when it ends
    TW_END_EXPIRED: (State.TIME_WAIT, State.CLOSED),
    TW_END_KILLED: (State.TIME_WAIT, State.CLOSED),
    TW_END_FIN_WAIT2_EXPIRED: (State.FIN_WAIT_2, State.CLOSED),
    TW_END_FIN_WAIT2_KILLED: (State.FIN_WAIT_2, State.CLOSED),
}
# The kernel's X -> CLOSE that were hand-overs to a timewait socket, not closes.
HANDOVERS: dict[State, tuple[int, ...]] = {
    State.FIN_WAIT_2: (TW_HANDOVER_FIN_WAIT2, TW_HANDOVER_TIME_WAIT),
    State.CLOSING: (TW_HANDOVER_CLOSING,),
}


def documented_transitions(counters: Counters) -> Tally[tuple[State, State, int]]:
    """Transitions between documented states, inferred steps included, per family."""
    tally: Tally[tuple[State, State, int]] = Tally()
    for (old, new, family), n in counters.transitions.items():
        tally[(documented(old), documented(new), family)] += n
    for (counter, family), n in counters.timewait.items():
        if counter in TIMEWAIT_STEPS:
            source, target = TIMEWAIT_STEPS[counter]
            tally[(source, target, family)] += n
    for source, counters_of in HANDOVERS.items():
        for family in {family for (_, family) in counters.timewait}:
            handed = sum(counters.timewait.get((c, family), 0) for c in counters_of)
            tally[(source, State.CLOSED, family)] -= handed
    return +tally  # drop zero and negative entries


def _bucket_bounds() -> list[str]:
    """Upper bounds of the probe's log2 slots, in seconds: 1 us, 2 us, 4 us, ... then +Inf."""
    return [f"{(1 << slot) / 1e6:g}" for slot in range(HIST_SLOTS - 1)] + ["+Inf"]


BUCKETS = _bucket_bounds()


def _histogram(metric: HistogramMetricFamily, labels: list[str], value: Histogram) -> None:
    slots, sum_ns = value
    running, buckets = 0, []
    for bound, count in zip(BUCKETS, slots, strict=True):
        running += count
        buckets.append((bound, running))
    metric.add_metric(labels, buckets, sum_ns / 1e9)


@dataclass(frozen=True)
class Labelling:
    """Whether closes, connects and accepts carry a ``port`` label (an allow-list is set)."""

    ports: bool = False

    def names(self, *names: str) -> list[str]:
        return [*names, "port"] if self.ports else list(names)

    def values(self, port: int, *values: str) -> list[str]:
        return [*values, str(port) if port else "other"] if self.ports else list(values)


class KernelCollector:
    """Metrics from the probe's counters, read fresh on every scrape."""

    def __init__(self, source: Callable[[], Counters], labelling: Labelling | None = None) -> None:
        self.source = source
        self.labelling = labelling or Labelling()

    def collect(self) -> Iterator[Metric]:
        counters = self.source()
        yield from self._states(counters)
        yield from self._outcomes(counters)
        yield from self._durations(counters)
        yield from self._resets_and_retransmits(counters)
        yield from probe_health(counters)

    def _states(self, counters: Counters) -> Iterator[Metric]:
        transitions = CounterMetricFamily(
            "synfin_tcp_state_transitions",
            "Transitions between documented TCP states, inferred steps included.",
            labels=["from", "to", "family"],
        )
        for (source, target, family), n in sorted(
            documented_transitions(counters).items(), key=str
        ):
            transitions.add_metric([source.label, target.label, family_name(family)], n)
        yield transitions
        connections = GaugeMetricFamily(
            "synfin_tcp_connections",
            "Sockets synfin is following, per documented state (timewait sockets included).",
            labels=["state", "family"],
        )
        # Every documented state, 0 included: a state nobody is in is still on the diagram.
        per_state: Tally[tuple[str, str]] = Tally(
            {(state.label, family_name(family)): 0 for state in State if state is not State.UNKNOWN
             for family in (AF_INET, AF_INET6)}
        )  # fmt: skip
        for (state, family), n in counters.sockets.items():
            per_state[(documented(state).label, family_name(family))] += n
        for (state, family), n in sorted(per_state.items()):
            if state == State.TIME_WAIT.label and not counters.timewait_sockets_known:
                continue  # unknown is not 0 (the lean tier without an all-namespace census)
            connections.add_metric([state, family], max(n, 0))
        yield connections

    def _outcomes(self, counters: Counters) -> Iterator[Metric]:
        label = self.labelling
        connects = CounterMetricFamily(
            "synfin_tcp_connects", "Active opens by result.", labels=label.names("result", "family")
        )
        accepts = CounterMetricFamily(
            "synfin_tcp_accepts",
            "Connections a listener accepted (its child sockets).",
            labels=label.names("family"),
        )
        for (kind, family, port), n in sorted(counters.opens.items()):
            if kind == OPEN_CONNECTED:
                connects.add_metric(label.values(port, RESULT_ESTABLISHED, family_name(family)), n)
            else:
                accepts.add_metric(label.values(port, family_name(family)), n)
        closes = CounterMetricFamily(
            "synfin_tcp_closes",
            "Established connections that closed, by who closed first and how.",
            labels=label.names("initiator", "kind", "family"),
        )
        failed: Tally[tuple[str, int, int]] = Tally()
        closed: Tally[tuple[str, str, int, int]] = Tally()
        for (facts, family, port), n in counters.endings.items():
            verdict = classify(Ending(Fact(facts)))
            if verdict.open == LISTENER:
                continue
            if verdict.result != RESULT_ESTABLISHED:
                if verdict.open in (OPEN_ACTIVE, OPEN_SIMULTANEOUS):
                    failed[(verdict.result, family, port)] += n
            else:
                closed[
                    (verdict.initiator or "unknown", verdict.close or "other", family, port)
                ] += n
        for (result, family, port), n in sorted(failed.items()):
            connects.add_metric(label.values(port, result, family_name(family)), n)
        for (initiator, kind, family, port), n in sorted(closed.items()):
            closes.add_metric(label.values(port, initiator, kind, family_name(family)), n)
        yield from (connects, accepts, closes)

    def _durations(self, counters: Counters) -> Iterator[Metric]:
        handshake = HistogramMetricFamily(
            "synfin_tcp_handshake_duration_seconds",
            "Client: connect()'s SYN to ESTABLISHED. Server: the SYN's arrival to ESTABLISHED.",
            labels=["role"],
        )
        for role, value in sorted(counters.handshake.items()):
            _histogram(handshake, [ROLES[role]], value)
        states = HistogramMetricFamily(
            "synfin_tcp_state_duration_seconds",
            "Time spent in each documented state.",
            labels=["state"],
        )
        merged: dict[str, Histogram] = {}
        for state, (slots, sum_ns) in counters.state_durations.items():
            label = documented(state).label
            old_slots, old_sum = merged.get(label, ([0] * HIST_SLOTS, 0))
            merged[label] = (
                [a + b for a, b in zip(old_slots, slots, strict=True)],
                old_sum + sum_ns,
            )
        for label, value in sorted(merged.items()):
            _histogram(states, [label], value)
        lifetimes = HistogramMetricFamily(
            "synfin_tcp_connection_duration_seconds",
            "Established connections, from the open to the close (TIME-WAIT not included).",
            labels=["role"],
        )
        for role, value in sorted(counters.connection_durations.items()):
            _histogram(lifetimes, [ROLES[role]], value)
        yield from (handshake, states, lifetimes)

    def _resets_and_retransmits(self, counters: Counters) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "synfin_tcp_resets_sent",
            "Resets this host sent, by the state they hit (none: no socket) and the kernel's "
            "reason.",
            labels=["state", "reason"],
        )
        for (state, reason), n in sorted(counters.resets_sent.items()):
            name = counters.reset_reasons.get(
                reason, "unknown" if not counters.reset_reasons else f"reason_{reason}"
            )
            sent.add_metric([documented(state).label if state else "none", name], n)
        received = CounterMetricFamily(
            "synfin_tcp_resets_received",
            "Resets this host received, by the state they hit.",
            labels=["state"],
        )
        for state, n in sorted(counters.resets_received.items()):
            received.add_metric([documented(state).label if state else "none"], n)
        retransmits = CounterMetricFamily(
            "synfin_tcp_retransmits",
            "Segments retransmitted, by kind and state.",
            labels=["kind", "state"],
        )
        for (kind, state), n in sorted(counters.retransmits.items()):
            label = (
                documented(state).label
                if state != KernelState.NEW_SYN_RECV
                else State.SYN_RCVD.label
            )
            retransmits.add_metric([RETRANSMIT_KINDS.get(kind, "unknown"), label], n)
        yield from (sent, received, retransmits)
