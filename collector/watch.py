"""``synfin watch`` and ``synfin replay``: the lifecycle engine's output, one line each.

Text for people (documented transitions, ``->`` observed and ``~>`` inferred), or JSON lines
for programs. The same view serves live events and recorded ones.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TextIO

from collector.classify import LISTENER
from collector.events import DecodeError, Event, decode, family_name
from collector.lifecycle import Engine, Finished, Noted, Output, StepTaken
from collector.output_filter import OutputFilter
from collector.snapshot import Difference

# Kernel timestamps are CLOCK_MONOTONIC; this turns them into wall-clock time for display.
MONOTONIC_TO_WALL_NS = time.time_ns() - time.monotonic_ns()

HEADER = (
    f"{'TIME':<15} {'LOCAL':<23} {'REMOTE':<23} {'TRANSITION':<27} {'IN OLD':>9}  "
    f"{'PROCESS':<16} NOTE"
)


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


def format_text(output: Output, offset_ns: int = MONOTONIC_TO_WALL_NS) -> str | None:
    """One line for people; None for outputs the text view leaves out."""
    if isinstance(output, Finished):
        return None  # its last step is already on screen
    if isinstance(output, StepTaken):
        conn, step = output.connection, output.step
        arrow = "->" if step.observed else "~>"
        transition = f"{step.source} {arrow} {step.target}"
        line = (
            f"{format_clock(step.at_ns, offset_ns):<15} {conn.local:<23} {conn.remote:<23} "
            f"{transition:<27} {format_duration(step.duration_ns):>9}  "
            f"{_owner(conn.owner_pid, conn.comm):<16} {step.how}"
        )
    elif isinstance(output, Noted):
        event = output.event
        line = (
            f"{format_clock(event.ts_ns, offset_ns):<15} {event.local:<23} {event.remote:<23} "
            f"{'':<27} {'':>9}  {_owner(event.owner_pid, event.comm):<16} {output.text}"
        )
    else:
        conn, verdict = output.connection, output.classification
        summary = f"{verdict.open} open, {verdict.result}" if verdict.open != LISTENER else LISTENER
        if verdict.close:
            summary += f"; {verdict.initiator} {CLOSE_PHRASES.get(verdict.close, verdict.close)}"
        line = (
            f"{format_clock(output.event.ts_ns, offset_ns):<15} {conn.local:<23} "
            f"{conn.remote:<23} = {summary}: {verdict.detail}"
        )
    return line.rstrip()


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


@dataclass
class ViewCounters:
    seen: int = 0
    undecodable: int = 0
    lost: int = 0


@dataclass
class View:
    """Feeds events to the engine and writes one line per output to ``out``."""

    out: TextIO
    engine: Engine
    as_json: bool = False
    offset_ns: int = MONOTONIC_TO_WALL_NS
    counters: ViewCounters = field(default_factory=ViewCounters)
    shown: OutputFilter = field(default_factory=OutputFilter)

    def header(self) -> None:
        if not self.as_json:
            self.out.write(HEADER + "\n")

    def on_record(self, record: bytes) -> None:
        try:
            event = decode(record)
        except DecodeError:
            self.counters.undecodable += 1
            return
        self.on_event(event)

    def on_event(self, event: Event) -> None:
        self.counters.seen += 1
        render = format_json if self.as_json else format_text
        for output in self.engine.feed(event):
            if not self.shown.admits(output):
                continue
            line = render(output, self.offset_ns)
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
        return text
