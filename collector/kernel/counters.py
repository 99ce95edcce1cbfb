"""The state probe's counter maps read into a ``Counters`` snapshot (synfin.records.counters)."""

from __future__ import annotations

from typing import Any

from synfin.kernel.loader import percpu_items
from synfin.kernel.state_probe import LEAN, TcpProbe
from synfin.records.addresses import AF_INET, AF_INET6
from synfin.records.counters import (
    HIST_SLOTS,
    N_RESET_REASONS,
    N_STATE_SLOTS,
    Counters,
    Histogram,
)


def _percpu(probe: TcpProbe, name: bytes) -> dict[int, Any]:
    """index -> per-CPU values of a per-CPU array, read in one batch."""
    # bcc hands back keys as ints or ctypes integers depending on the map type.
    return {getattr(key, "value", key): values for key, values in percpu_items(probe.bpf[name])}


def _array(probe: TcpProbe, name: bytes) -> dict[int, int]:
    return {
        index: total for index, values in _percpu(probe, name).items() if (total := sum(values))
    }


def _histograms(probe: TcpProbe, name: bytes) -> dict[int, Histogram]:
    result: dict[int, Histogram] = {}
    for index, per_cpu in _percpu(probe, name).items():
        slots = [sum(h.slots[i] for h in per_cpu) for i in range(HIST_SLOTS)]
        if any(slots):
            result[index] = (slots, sum(h.sum_ns for h in per_cpu))
    return result


def _hash(probe: TcpProbe, name: bytes, fields: tuple[str, ...]) -> dict[tuple[int, ...], int]:
    result: dict[tuple[int, ...], int] = {}
    for key, values in probe.bpf[name].items():
        total = sum(values)
        if total:
            result[tuple(getattr(key, f) for f in fields)] = total
    return result


def _by_family(array: dict[int, int]) -> dict[tuple[int, int], int]:
    """Arrays indexed ``thing * 2 + is_ipv6``, keyed (thing, AF_INET or AF_INET6)."""
    return {(index // 2, AF_INET6 if index % 2 else AF_INET): n for index, n in array.items()}


def read_timewait(probe: TcpProbe) -> dict[tuple[int, int], int]:
    """Only the timewait counters (counter, family): what a census is set against."""
    return _by_family(_array(probe, b"timewait_counts"))


def read(probe: TcpProbe) -> Counters:
    """Every counter the probe keeps, summed over CPUs.

    The maps are read one after another while connections go on, so series that count the
    same connections are read next to each other: the opens beside the handshake times, the
    endings beside the connection times."""
    tracking = probe.tracking_stats()
    stream = probe.stream_stats()
    return Counters(
        transitions=probe.transition_counts(),
        sockets=_by_family(_array(probe, b"sockets_by_state")),
        opens=_hash(probe, b"opens", ("kind", "family", "port")),  # type: ignore[arg-type]
        handshake=_histograms(probe, b"handshake_seconds"),
        endings=_hash(probe, b"endings", ("facts", "family", "port")),  # type: ignore[arg-type]
        connection_durations=_histograms(probe, b"connection_seconds"),
        state_durations=_histograms(probe, b"state_seconds"),
        resets_sent={
            divmod(i, N_RESET_REASONS): n for i, n in _array(probe, b"resets_sent").items()
        },
        resets_received=_array(probe, b"resets_received"),
        retransmits={divmod(i, N_STATE_SLOTS): n for i, n in _array(probe, b"retransmits").items()},
        timewait=read_timewait(probe),
        stream_sent=stream.sent,
        stream_lost=stream.lost,
        sockets_live=tracking.live,
        sockets_capacity=tracking.capacity,
        sockets_evicted=tracking.evicted,
        timewait_untracked=tracking.timewait_untracked,
        reset_reasons=dict(probe.features.reset_reasons),
        missed_runs=probe.missed_runs(),
        # The lean tier leaves timewait sockets to the census (exporter/timewait_census.py).
        timewait_sockets_known=probe.tier != LEAN,
    )
