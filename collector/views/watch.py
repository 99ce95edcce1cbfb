"""``synfin watch`` and ``synfin replay``: the lifecycle engine's outputs, one line each.

The same view serves live events and recorded ones; synfin.views.lines formats each line.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from synfin.engine.classify import LISTENER, Classification
from synfin.engine.connection import Classified, Output
from synfin.engine.lifecycle import Engine
from synfin.engine.reconcile import Difference
from synfin.records import json_lines
from synfin.records.events import Event
from synfin.units import MONOTONIC_TO_WALL_NS
from synfin.views.filters import OutputFilter
from synfin.views.lines import (
    CLOSE_PHRASES,
    CSV_COLUMNS,
    NARROW,
    Clock,
    Layout,
    csv_row,
    format_json,
    format_text,
)


def unfollowed_note(sockets: int) -> str:
    return (
        f"{sockets} socket(s) no longer followed (the socket table was full: raise --max-sockets)"
    )


def skipped_note(runs: int) -> str:
    return f"{runs} probe run(s) skipped by the kernel (a BPF program was already running there)"


@dataclass
class ViewCounters:
    seen: int = 0
    undecodable: int = 0
    lost: int = 0
    unfollowed: int = 0  # sockets the probe's full table stopped following
    skipped: int = 0  # runs of the probe's programs the kernel skipped
    endings: Counter[str] = field(default_factory=Counter)  # connections by how they ended

    def losses(self) -> str:
        """What the summary says was lost, if anything: ``, 3 lost (...)``."""
        text = ""
        if self.lost:
            text += " (raise --ring-buffer-pages or narrow the filters)"
        if self.undecodable:
            text += f", {self.undecodable} undecodable"
        if self.unfollowed:
            text += f", {unfollowed_note(self.unfollowed)}"
        if self.skipped:
            text += f", {skipped_note(self.skipped)}"
        return text

    def count_ending(self, verdict: Classification) -> None:
        if verdict.open == LISTENER:
            return
        ending = CLOSE_PHRASES.get(verdict.close or "", verdict.result)
        self.endings[verdict.result if verdict.result != "established" else ending] += 1


@dataclass
class View:
    """Feeds events to the engine and writes one line per output to ``out``."""

    out: TextIO
    engine: Engine
    style: str = "text"  # text, json or csv
    offset_ns: int = MONOTONIC_TO_WALL_NS
    counters: ViewCounters = field(default_factory=ViewCounters)
    shown: OutputFilter = field(default_factory=OutputFilter)
    relative: bool = False  # times as seconds since the first event
    layout: Layout = NARROW

    def __post_init__(self) -> None:
        self._clock = Clock(self.offset_ns)
        self._csv = csv.writer(self.out, lineterminator="\n") if self.style == "csv" else None

    @property
    def as_json(self) -> bool:
        return self.style == "json"

    def header(self) -> None:
        if self.style == "text":
            self.out.write(self.layout.header() + "\n")
        elif self._csv is not None:
            self._csv.writerow(CSV_COLUMNS)

    def on_event(self, event: Event) -> None:
        self.counters.seen += 1
        if self.relative and self._clock.since_ns is None:
            self._clock = Clock(self.offset_ns, since_ns=event.ts_ns)
        for output in self.engine.feed(event):
            if isinstance(output, Classified):
                self.counters.count_ending(output.classification)
            if not self.shown.admits(output):
                continue
            self._write(output)

    def _write(self, output: Output) -> None:
        if self._csv is not None:
            row = csv_row(output, self._clock)
            if row is not None:
                self._csv.writerow(row)
            return
        if self.as_json:
            self.out.write(format_json(output, self.offset_ns) + "\n")
            return
        line = format_text(output, layout=self.layout, clock=self._clock)
        if line is not None:
            self.out.write(line + "\n")

    def reconciled(self, differences: list[Difference], compared: int) -> None:
        """Show how synfin's count of sockets per state compares with the kernel's."""
        if self.as_json:
            record = {
                "type": "reconcile",
                "time": time.time(),
                "compared": compared,
                "differences": [
                    {
                        "netns": d.netns,
                        "state": d.state.value,
                        "synfin": d.synfin,
                        "kernel": d.kernel,
                    }
                    for d in differences
                ],
            }
            self.out.write(json_lines.dumps(record) + "\n")
            return
        if self._csv is not None:
            for d in differences:
                note = f"{d.state}: synfin {d.synfin}, kernel {d.kernel} ({compared} sockets)"
                when = self._clock.format(time.monotonic_ns())
                self._csv.writerow([when, "reconcile", "", d.netns, "", "", "", "", "", "", "",
                                    "", note])  # fmt: skip
            return
        if not differences:
            self.out.write(f"# reconcile: agrees with the kernel ({compared} sockets)\n")
            return
        listed = "; ".join(
            f"netns {d.netns} {d.state}: synfin {d.synfin}, kernel {d.kernel}" for d in differences
        )
        self.out.write(f"# reconcile: differs from the kernel ({compared} sockets): {listed}\n")

    def summary(self, command: str = "watch") -> str:
        text = f"synfin {command}: {self.counters.seen} events, {self.counters.lost} lost"
        text += self.counters.losses()
        endings = self.counters.endings
        if endings:
            listed = ", ".join(f"{count} {how}" for how, count in endings.most_common())
            text += f"; {sum(endings.values())} connection(s) ended: {listed}"
        return text
