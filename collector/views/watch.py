"""``synfin watch`` and ``synfin replay``: the lifecycle engine's output, one line each.

Text for people (documented transitions, ``->`` observed and ``~>`` inferred), or JSON lines
for programs. The same view serves live events and recorded ones.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from synfin.engine.classify import LISTENER, Classification
from synfin.engine.lifecycle import Classified, Engine, Finished, Noted, Output, StepTaken
from synfin.kernel.sock_diag import Difference
from synfin.records.addresses import family_name
from synfin.records.events import DecodeError, Event, decode
from synfin.views.filters import OutputFilter

# Kernel timestamps are CLOCK_MONOTONIC; this turns them into wall-clock time for display.
MONOTONIC_TO_WALL_NS = time.time_ns() - time.monotonic_ns()


@dataclass(frozen=True)
class Layout:
    """Column widths of the text view: narrow for 80-odd columns, wide for IPv6 and more."""

    endpoint: int = 23
    wide: bool = False  # also the network namespace and the cgroup

    def header(self) -> str:
        extra = f"{'NETNS':<11} " if self.wide else ""
        return (
            f"{'TIME':<15} {extra}{'LOCAL':<{self.endpoint}} {'REMOTE':<{self.endpoint}} "
            f"{'TRANSITION':<27} {'IN OLD':>9}  {'PROCESS':<16} NOTE"
        )


NARROW = Layout()
# [IPv6]:port is at most 47 characters.
WIDE = Layout(endpoint=47, wide=True)
HEADER = NARROW.header()


@dataclass(frozen=True)
class Clock:
    """Kernel timestamps as people read them: wall-clock time, or seconds since a start."""

    offset_ns: int = MONOTONIC_TO_WALL_NS
    since_ns: int | None = None  # relative: seconds since this kernel timestamp

    def format(self, ts_ns: int | None) -> str:
        if ts_ns is None:
            return "?"
        if self.since_ns is not None:
            return f"+{(ts_ns - self.since_ns) / 1e9:.6f}"
        return format_clock(ts_ns, self.offset_ns)


def format_duration(ns: int | None) -> str:
    """A short human duration (``12us``, ``3.4ms``, ``61s``); blank when unknown."""
    if ns is None:
        return ""
    for unit, scale in (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
        if ns >= scale:
            value = ns / scale
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return f"{ns}ns"


def format_clock(ts_ns: int | None, offset_ns: int = MONOTONIC_TO_WALL_NS) -> str:
    if ts_ns is None:
        return "?"
    wall_ns = ts_ns + offset_ns
    seconds = wall_ns // 1_000_000_000
    micros = (wall_ns // 1_000) % 1_000_000
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{micros:06d}"


CLOSE_PHRASES = {
    "graceful": "graceful close",
    "half_close": "half-close",
    "reset_sent": "reset",
    "reset_received": "reset",
    "abort": "abort",
}


def _owner(pid: int, comm: str) -> str:
    return f"{pid}/{comm}" if pid else ""


def format_text(
    output: Output,
    offset_ns: int = MONOTONIC_TO_WALL_NS,
    layout: Layout = NARROW,
    clock: Clock | None = None,
) -> str | None:
    """One line for people; None for outputs the text view leaves out."""
    if isinstance(output, Finished):
        return None  # its last step is already on screen
    when = (clock or Clock(offset_ns)).format
    width = layout.endpoint
    holder = output.connection if output.connection is not None else output.event
    netns = f"{holder.netns or '-':<11} " if layout.wide else ""
    if isinstance(output, StepTaken):
        conn, step = output.connection, output.step
        arrow = "->" if step.observed else "~>"
        transition = f"{step.source} {arrow} {step.target}"
        line = (
            f"{when(step.at_ns):<15} {netns}{conn.local:<{width}} {conn.remote:<{width}} "
            f"{transition:<27} {format_duration(step.duration_ns):>9}  "
            f"{_owner(conn.owner_pid, conn.comm):<16} {step.how}"
        )
    elif isinstance(output, Noted):
        event = output.event
        line = (
            f"{when(event.ts_ns):<15} {netns}{event.local:<{width}} {event.remote:<{width}} "
            f"{'':<27} {'':>9}  {_owner(event.owner_pid, event.comm):<16} {output.text}"
        )
    else:
        conn, verdict = output.connection, output.classification
        line = (
            f"{when(output.event.ts_ns):<15} {netns}{conn.local:<{width}} "
            f"{conn.remote:<{width}} = {verdict_summary(verdict)}: {verdict.detail}"
        )
    return line.rstrip()


def verdict_summary(verdict: Classification) -> str:
    """``active open, established; local graceful close``."""
    if verdict.open == LISTENER:
        return LISTENER
    summary = f"{verdict.open} open, {verdict.result}"
    if verdict.close:
        summary += f"; {verdict.initiator} {CLOSE_PHRASES.get(verdict.close, verdict.close)}"
    return summary


def _endpoints(output: Output) -> dict[str, object]:
    source: Event = output.event
    conn = output.connection
    holder = conn if conn is not None else source
    return {
        "family": family_name(holder.family),
        "netns": holder.netns or None,
        "local": holder.local,
        "remote": holder.remote,
        "owner_pid": holder.owner_pid or None,
        "comm": holder.comm or None,
    }


def format_json(output: Output, offset_ns: int = MONOTONIC_TO_WALL_NS) -> str:
    record: dict[str, object] = {"time": (output.event.ts_ns + offset_ns) / 1e9}
    record.update(_endpoints(output))
    if isinstance(output, StepTaken):
        record["type"] = "step"
        record.update(output.step.to_dict())
        record["pid"] = output.event.pid if output.event.in_process_context else None
    elif isinstance(output, Noted):
        record["type"] = "note"
        record["text"] = output.text
    elif isinstance(output, Finished):
        record["type"] = "finished"
        record.update(output.connection.to_dict())
    else:
        record["type"] = "classified"
        record.update(output.classification.to_dict())
        record["path"] = [state.value for state in output.connection.path()]
    return json.dumps(record, separators=(",", ":"))


CSV_COLUMNS = (
    "time", "type", "family", "netns", "local", "remote", "from", "to", "observed",
    "time_in_from_s", "owner_pid", "comm", "note",
)  # fmt: skip


def csv_row(output: Output, clock: Clock) -> list[object] | None:
    """One CSV row in CSV_COLUMNS order; None for outputs the CSV leaves out."""
    if isinstance(output, Finished):
        return None
    holder = output.connection if output.connection is not None else output.event
    common = [family_name(holder.family), holder.netns or "", holder.local, holder.remote]
    owner = [holder.owner_pid or "", holder.comm]
    if isinstance(output, StepTaken):
        step = output.step
        duration = "" if step.duration_ns is None else f"{step.duration_ns / 1e9:.9f}"
        return [
            clock.format(step.at_ns), "step", *common, step.source.value, step.target.value,
            int(step.observed), duration, *owner, step.how,
        ]  # fmt: skip
    if isinstance(output, Noted):
        return [clock.format(output.event.ts_ns), "note", *common, "", "", "", "", *owner,
                output.text]  # fmt: skip
    verdict = output.classification
    note = f"{verdict_summary(verdict)}: {verdict.detail}"
    return [clock.format(output.event.ts_ns), "classified", *common, "", "", "", "", *owner, note]


@dataclass
class ViewCounters:
    seen: int = 0
    undecodable: int = 0
    lost: int = 0
    endings: Counter[str] = field(default_factory=Counter)  # connections by how they ended

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

    def on_record(self, record: bytes) -> None:
        try:
            event = decode(record)
        except DecodeError:
            self.counters.undecodable += 1
            return
        self.on_event(event)

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
            self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
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
        if self.counters.lost:
            text += " (raise --ring-buffer-pages or narrow the filters)"
        if self.counters.undecodable:
            text += f", {self.counters.undecodable} undecodable"
        endings = self.counters.endings
        if endings:
            listed = ", ".join(f"{count} {how}" for how, count in endings.most_common())
            text += f"; {sum(endings.values())} connection(s) ended: {listed}"
        return text
