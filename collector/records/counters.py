"""The state probe's counters at one moment, as plain data.

synfin.kernel.counters sums the per-CPU BPF maps into a ``Counters``; the Prometheus collector
turns a ``Counters`` into metrics. Because a snapshot is plain data it also saves to JSON and
loads back, so recorded kernel counters serve as fixtures for the metrics' golden tests.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synfin.records import abi

_HEADER = abi.events()
HIST_SLOTS = _HEADER["HIST_SLOTS"]
N_STATE_SLOTS = _HEADER["N_STATE_SLOTS"]
N_RESET_REASONS = _HEADER["N_RESET_REASONS"]
N_TIMEWAIT_COUNTERS = _HEADER["N_TIMEWAIT_COUNTERS"]
N_RETRANSMIT_KINDS = _HEADER["N_RETRANSMIT_KINDS"]

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
    missed_runs: dict[str, int] = field(default_factory=dict)  # hook ("sock:inet_sock_set_state")
    # False when ``sockets`` holds no timewait sockets (the lean tier without a census).
    timewait_sockets_known: bool = True

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


def _key(text: str) -> int | tuple[int, ...] | str:
    if not text.replace(",", "").lstrip("-").isdigit():
        return text  # a name: a hook's
    parts = tuple(int(part) for part in text.split(","))
    return parts[0] if len(parts) == 1 else parts


def _value(value: object) -> object:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], list):
        return (value[0], value[1])  # a histogram
    return value
