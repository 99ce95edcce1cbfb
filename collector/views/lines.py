"""One engine output as one line: text for people, JSON and CSV for programs.

Text shows documented transitions (``->`` observed, ``~>`` inferred), with columns narrow for
a terminal or wide for IPv6 and namespaces; ``synfin watch`` and ``synfin replay`` write these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from synfin.engine.classify import LISTENER, OPEN_NONE, Classification
from synfin.engine.connection import Finished, Noted, Output, StepTaken
from synfin.records import json_lines
from synfin.records.addresses import family_name
from synfin.records.events import Event
from synfin.units import MONOTONIC_TO_WALL_NS, format_duration


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
    "timeout": "timeout",
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
    if verdict.open == OPEN_NONE:
        return "never opened"
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
        return json_lines.dumps(connection_line(output, offset_ns, "finished"))
    else:
        record["type"] = "classified"
        record.update(output.classification.to_dict())
        record["path"] = [state.value for state in output.connection.path()]
    return json_lines.dumps(record)


def connection_line(
    output: Finished, offset_ns: int = MONOTONIC_TO_WALL_NS, kind: str = "connection"
) -> dict[str, object]:
    """A finished connection as one JSON object: the per-connection mode's line, and
    ``watch --json``'s ``finished`` line (``kind``)."""
    record: dict[str, object] = {"time": (output.event.ts_ns + offset_ns) / 1e9}
    record.update(_endpoints(output))
    record["type"] = kind
    record.update(output.connection.to_dict())
    return record


def format_connection_text(
    line: dict[str, Any], layout: Layout = NARROW, clock: Clock | None = None
) -> str:
    """A connection line for people: its path with the time in each state, how it ended."""
    clock = clock or Clock()
    width = layout.endpoint
    netns = f"{line['netns'] or '-':<11} " if layout.wide else ""
    path = ""
    for step in line["steps"]:
        spent = step["time_in_from_s"]
        path += step["from"] + (
            f" {format_duration(int(spent * 1e9))}" if spent is not None else ""
        )
        path += " -> " if step["observed"] else " ~> "
    path += line["path"][-1] if line["path"] else "?"
    verdict = line["classification"]
    ended = ""
    if verdict:
        summary = verdict_summary(
            Classification(
                verdict["open"], verdict["result"], verdict["initiator"], verdict["close"]
            )
        )
        ended = f" = {summary}"
    when = line["time"]
    stamp = clock.format(None if when is None else int(when * 1e9) - clock.offset_ns)
    owner = _owner(line["owner_pid"] or 0, line["comm"] or "")
    return (
        f"{stamp:<15} {netns}{line['local']:<{width}} {line['remote']:<{width}} "
        f"{path}{ended}  {owner}"
    ).rstrip()


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
