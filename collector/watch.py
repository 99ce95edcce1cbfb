"""``synfin watch``: one line per TCP state change, in the textbook's state names."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from collector.events import DecodeError, StateChange, decode

# Kernel timestamps are CLOCK_MONOTONIC; this turns them into wall-clock time for display.
_MONOTONIC_TO_WALL_NS = time.time_ns() - time.monotonic_ns()

HEADER = f"{'TIME':<15} {'LOCAL':<23} {'REMOTE':<23} {'TRANSITION':<27} {'IN OLD':>9}  PROCESS"


def format_duration(ns: int | None) -> str:
    """A short human duration (``12us``, ``3.4ms``, ``61s``); blank when unknown."""
    if ns is None:
        return ""
    for unit, scale in (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
        if ns >= scale:
            value = ns / scale
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return f"{ns}ns"


def format_clock(ts_ns: int) -> str:
    wall_ns = ts_ns + _MONOTONIC_TO_WALL_NS
    seconds = wall_ns // 1_000_000_000
    micros = (wall_ns // 1_000) % 1_000_000
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{micros:06d}"


def format_text(event: StateChange) -> str:
    transition = f"{event.old} -> {event.new}"
    process = f"{event.pid} {event.comm}" if event.in_process_context else ""
    return (
        f"{format_clock(event.ts_ns):<15} {event.local:<23} {event.remote:<23} "
        f"{transition:<27} {format_duration(event.time_in_old_state_ns):>9}  {process}"
    ).rstrip()


def format_json(event: StateChange) -> str:
    record = event.to_dict()
    record["time"] = (event.ts_ns + _MONOTONIC_TO_WALL_NS) / 1e9
    return json.dumps(record, separators=(",", ":"))


@dataclass
class WatchCounters:
    seen: int = 0
    undecodable: int = 0
    lost: int = 0


@dataclass
class Watcher:
    """Decodes raw records and writes one line each to ``out``."""

    out: TextIO
    as_json: bool = False
    counters: WatchCounters = field(default_factory=WatchCounters)

    def __post_init__(self) -> None:
        self._format: Callable[[StateChange], str] = format_json if self.as_json else format_text

    def header(self) -> None:
        if not self.as_json:
            self.out.write(HEADER + "\n")

    def on_record(self, record: bytes) -> None:
        try:
            event = decode(record)
        except DecodeError:
            self.counters.undecodable += 1
            return
        self.counters.seen += 1
        self.out.write(self._format(event) + "\n")

    def summary(self) -> str:
        text = f"synfin watch: {self.counters.seen} events, {self.counters.lost} lost"
        if self.counters.lost:
            text += " (raise --ring-buffer-pages or narrow the filters)"
        if self.counters.undecodable:
            text += f", {self.counters.undecodable} undecodable"
        return text
