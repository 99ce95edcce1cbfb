"""The probe's counters at one moment, as plain data.

``read(probe)`` sums the per-CPU BPF maps into a ``Counters``; the Prometheus collector turns a
``Counters`` into metrics. Because a snapshot is plain data it also saves to JSON and loads
back, so recorded kernel counters serve as fixtures for the metrics' golden tests.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synfin.kernel.state_probe import N_STATE_SLOTS, TcpProbe
from synfin.records.events import AF_INET, AF_INET6

HIST_SLOTS = 28  # probes/synfin_events.h
N_RESET_REASONS = 64
N_TIMEWAIT_COUNTERS = 9
N_RETRANSMIT_KINDS = 3

Histogram = tuple[list[int], int]  # (count per log2 slot, sum in ns)


@dataclass
class Counters:
    transitions: dict[tuple[int, int, int], int] = field(default_factory=dict)  # old, new, family
    sockets: dict[tuple[int, int], int] = field(default_factory=dict)  # state, family
    handshake: dict[int, Histogram] = field(default_factory=dict)  # role
    state_durations: dict[int, Histogram] = field(default_factory=dict)  # kernel state
    connection_durations: dict[int, Histogram] = field(default_factory=dict)  # role
    resets_sent: dict[tuple[int, int], int] = field(default_factory=dict)  # state, reason
    resets_received: dict[int, int] = field(default_factory=dict)  # state
    retransmits: dict[tuple[int, int], int] = field(default_factory=dict)  # kind, state
    timewait: dict[tuple[int, int], int] = field(default_factory=dict)  # counter, family
    opens: dict[tuple[int, int, int], int] = field(default_factory=dict)  # kind, family, port
    endings: dict[tuple[int, int, int], int] = field(default_factory=dict)  # facts, family, port
    stream_sent: int = 0
    stream_lost: int = 0
    sockets_live: int = 0
    sockets_capacity: int = 0
    sockets_evicted: int = 0
    timewait_untracked: int = 0
    reset_reasons: dict[int, str] = field(default_factory=dict)

    # -- JSON, for fixtures ----------------------------------------------------------------

    def to_json(self) -> str:
        def keyed(value: object) -> object:
            if isinstance(value, dict):
                return {",".join(map(str, k)) if isinstance(k, tuple) else str(k): keyed(v)
                        for k, v in value.items()}  # fmt: skip
            return value

        return json.dumps(
            {name: keyed(value) for name, value in asdict(self).items()}, indent=1, sort_keys=True
        )

    @classmethod
    def from_json(cls, text: str) -> Counters:
        raw: dict[str, Any] = json.loads(text)
        counters = cls()
        for name, value in raw.items():
            current = getattr(counters, name)
            if isinstance(current, dict):
                setattr(counters, name, {_key(k): _value(v) for k, v in value.items()})
            else:
                setattr(counters, name, value)
        return counters

    @classmethod
    def load(cls, path: Path) -> Counters:
        return cls.from_json(path.read_text())


def _key(text: str) -> int | tuple[int, ...]:
    parts = tuple(int(part) for part in text.split(","))
    return parts[0] if len(parts) == 1 else parts


def _value(value: object) -> object:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], list):
        return (value[0], value[1])  # a histogram
    return value


# -- reading the live maps -------------------------------------------------------------------


def _percpu(probe: TcpProbe, name: bytes) -> dict[int, Any]:
    """index -> per-CPU values of a per-CPU array, read in one batch."""
    # bcc hands back keys as ints or ctypes integers depending on the map type.
    return {
        getattr(key, "value", key): values for key, values in probe.bpf[name].items_lookup_batch()
    }


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


def read(probe: TcpProbe) -> Counters:
    """Every counter the probe keeps, summed over CPUs."""
    tracking = probe.tracking_stats()
    stream = probe.stream_stats()
    return Counters(
        transitions=probe.transition_counts(),
        sockets=_by_family(_array(probe, b"sockets_by_state")),
        handshake=_histograms(probe, b"handshake_seconds"),
        state_durations=_histograms(probe, b"state_seconds"),
        connection_durations=_histograms(probe, b"connection_seconds"),
        resets_sent={
            divmod(i, N_RESET_REASONS): n for i, n in _array(probe, b"resets_sent").items()
        },
        resets_received=_array(probe, b"resets_received"),
        retransmits={divmod(i, N_STATE_SLOTS): n for i, n in _array(probe, b"retransmits").items()},
        timewait=_by_family(_array(probe, b"timewait_counts")),
        opens=_hash(probe, b"opens", ("kind", "family", "port")),  # type: ignore[arg-type]
        endings=_hash(probe, b"endings", ("facts", "family", "port")),  # type: ignore[arg-type]
        stream_sent=stream.sent,
        stream_lost=stream.lost,
        sockets_live=tracking.live,
        sockets_capacity=tracking.capacity,
        sockets_evicted=tracking.evicted,
        timewait_untracked=tracking.timewait_untracked,
        reset_reasons=dict(probe.features.reset_reasons),
    )
