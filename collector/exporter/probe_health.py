"""synfin's own health, from the probe's counters: what the live stream and the kernel lost,
and how full the per-socket map is (docs/metrics.md, "synfin itself")."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from synfin.records.counters import Counters


def probe_health(counters: Counters) -> Iterator[Metric]:
    """The probe-health families, read fresh on every scrape (KernelCollector yields them)."""
    records = CounterMetricFamily(
        "synfin_stream_records",
        "Per-event records for the live views: sent, or lost because the ring buffer was full.",
        labels=["outcome"],
    )
    records.add_metric(["sent"], counters.stream_sent)
    records.add_metric(["lost"], counters.stream_lost)
    yield records
    missed = CounterMetricFamily(
        "synfin_probe_missed_runs",
        "Runs of synfin's programs the kernel skipped because a BPF program was already "
        "running on that CPU: what they would have counted is missing.",
        labels=["hook"],
    )
    for hook, n in sorted(counters.missed_runs.items()):
        missed.add_metric([hook], n)
    yield missed
    entries = GaugeMetricFamily(
        "synfin_bpf_map_entries", "Entries in synfin's BPF maps.", labels=["map"]
    )
    capacity = GaugeMetricFamily(
        "synfin_bpf_map_capacity", "Capacity of synfin's BPF maps.", labels=["map"]
    )
    entries.add_metric(["sockets"], counters.sockets_live)
    capacity.add_metric(["sockets"], counters.sockets_capacity)
    yield from (entries, capacity)
    yield CounterMetricFamily(
        "synfin_bpf_map_evictions",
        "Sockets synfin stopped following because its map was full (raise --max-sockets).",
        value=counters.sockets_evicted,
    )
    yield CounterMetricFamily(
        "synfin_timewait_untracked",
        "Timewait sockets that ended without synfin seeing them begin (before it started).",
        value=counters.timewait_untracked,
    )
