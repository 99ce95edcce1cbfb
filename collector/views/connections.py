"""``--per-connection``: one line per socket end when that end is over.

The line is the connection as the lifecycle engine sees it (its documented path with the time
in each state, how it opened and closed), in the schema of ``watch --json``'s ``finished``
lines, with ``"type": "connection"``. It is made two ways, with one result:

- from the engine's ``Finished`` output, for a stream of events (a ``watch`` recording, or a
  connection record the shortcut below does not cover);
- from a path the engine already read: records of one *shape* (the same steps, facts and flags;
  see ``ConnectionRecord.shape``) differ only in identities and times, so the engine reads the
  first record of each shape twice, once with its real times and once with each time replaced
  by a marker far from the others, and where every time in the marked line traces back to one
  input time (plus a fixed offset, as TIME-WAIT's inferred start is 2MSL before its end), the
  marked line becomes the shape's template. The template is kept only if it reproduces the
  engine's line for that first record exactly. At 20,000 connections a second this is the
  difference between the engine reading every step and reading a few dozen paths.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from synfin.engine.classify import Classification
from synfin.engine.connection import Classified, Finished, Output
from synfin.engine.lifecycle import Engine
from synfin.engine.states import State
from synfin.records import json_lines
from synfin.records.addresses import family_name
from synfin.records.connections import ConnectionRecord
from synfin.records.description import KernelDescription
from synfin.units import MONOTONIC_TO_WALL_NS
from synfin.views.filters import OutputFilter
from synfin.views.lines import NARROW, Clock, Layout, connection_line, format_connection_text
from synfin.views.watch import ViewCounters

_MARK_SHIFT = 40  # markers 2^40 ns (18 minutes) apart; the engine's offsets are minutes at most
_HALF = 1 << (_MARK_SHIFT - 1)
Ref = tuple[int, int] | None  # (index of an input time, offset), or unknown


def _marker(index: int) -> int:
    return (index + 1) << _MARK_SHIFT


def _ref(value: object, inputs: int) -> Ref:
    """Which input time ``value`` came from in a marked run; ValueError if none."""
    if value is None:
        return None
    if not isinstance(value, int):
        raise ValueError(value)
    index = ((value + _HALF) >> _MARK_SHIFT) - 1
    offset = value - _marker(index)
    if not 0 <= index < inputs or abs(offset) >= _HALF:
        raise ValueError(value)
    return (index, offset)


def _times(record: ConnectionRecord) -> list[int]:
    """A record's input times: each step's, then its start (the order markers follow)."""
    return [step.ts_ns for step in record.path] + [record.start_ns]


def _marked(record: ConnectionRecord) -> ConnectionRecord:
    path = tuple(step._replace(ts_ns=_marker(i)) for i, step in enumerate(record.path))
    start = _marker(len(path)) if record.start_ns else 0
    return record._replace(path=path, start_ns=start)


@dataclass(frozen=True)
class _Template:
    skeleton: dict[str, object]
    end: Ref  # the line's time: the last step's
    steps: tuple[tuple[Ref, Ref], ...]  # each step's (at, since)
    states: frozenset[State]
    classification: Classification | None

    def render(self, record: ConnectionRecord, offset_ns: int) -> dict[str, object]:
        times = _times(record)

        def at(ref: Ref) -> int | None:
            return None if ref is None else times[ref[0]] + ref[1]

        line = self.skeleton.copy()
        end = at(self.end)
        line["time"] = None if end is None else (end + offset_ns) / 1e9
        line["family"] = family_name(record.family)
        line["netns"] = record.netns
        line["local"], line["remote"] = record.local, record.remote
        line["owner_pid"] = record.owner_pid or None
        line["comm"] = (record.comm if record.owner_pid else "") or None
        line["skaddr"] = f"{record.skaddr:#x}"
        steps = []
        for shown, (at_ref, since_ref) in zip(self.skeleton["steps"], self.steps, strict=True):  # type: ignore[call-overload]
            step = shown.copy()
            step_at, since = at(at_ref), at(since_ref)
            step["at_ns"] = step_at
            known = step_at is not None and since is not None and since <= step_at
            step["time_in_from_s"] = (step_at - since) / 1e9 if known else None  # type: ignore[operator]
            steps.append(step)
        line["steps"] = steps
        return line


def _read(engine: Engine, record: ConnectionRecord) -> list[Output]:
    outputs: list[Output] = []
    for event in record.events():
        outputs += engine.feed(event)
    return outputs


@dataclass
class ConnectionView:
    """Connection records in, one line per finished socket end out (JSON or text)."""

    out: TextIO
    description: KernelDescription
    style: str = "json"  # json or text
    offset_ns: int = MONOTONIC_TO_WALL_NS
    shown: OutputFilter = field(default_factory=OutputFilter)
    layout: Layout = NARROW
    counters: ViewCounters = field(default_factory=ViewCounters)
    templates: dict[tuple[object, ...], _Template | None] = field(default_factory=dict)
    read_by_engine: int = 0  # records the shortcut did not cover

    def __post_init__(self) -> None:
        self.engine = Engine(self.description)  # long paths, and shapes without a template
        self._continuing: set[int] = set()  # sockets whose path came in parts
        self._clock = Clock(self.offset_ns)

    def header(self) -> None:
        if self.style == "text":
            extra = f"{'NETNS':<11} " if self.layout.wide else ""
            width = self.layout.endpoint
            self.out.write(
                f"{'TIME':<15} {extra}{'LOCAL':<{width}} {'REMOTE':<{width}} "
                "PATH (time in each state; ~> inferred) = HOW IT OPENED AND CLOSED  PROCESS\n"
            )

    def on_record(self, record: ConnectionRecord) -> None:
        self.counters.seen += 1
        if record.part or record.skaddr in self._continuing:
            self._through_engine(record)
            return
        shape = record.shape()
        template = self.templates.get(shape, _Missing)
        if template is _Missing:
            template = self.templates[shape] = self._learn(record)
        if template is None:
            self._through_engine(record)
            return
        assert isinstance(template, _Template)
        if template.classification is not None:
            self.counters.count_ending(template.classification)
        if self.shown.admits_connection(record, template.states):
            self._write(template.render(record, self.offset_ns))

    def _through_engine(self, record: ConnectionRecord) -> None:
        self.read_by_engine += 1
        if record.part:
            self._continuing.add(record.skaddr)
        else:
            self._continuing.discard(record.skaddr)
        for output in _read(self.engine, record):
            if isinstance(output, Classified):
                self.counters.count_ending(output.classification)
            elif isinstance(output, Finished) and self.shown.admits(output):
                self._write(connection_line(output, self.offset_ns))

    def _learn(self, record: ConnectionRecord) -> _Template | None:
        """The shape's template, or None where the engine's line cannot be templated."""
        real = [o for o in _read(Engine(self.description), record) if isinstance(o, Finished)]
        marked = [
            o for o in _read(Engine(self.description), _marked(record)) if isinstance(o, Finished)
        ]
        if len(real) != 1 or len(marked) != 1:
            return None
        conn, inputs = marked[0].connection, len(record.path) + 1
        try:
            template = _Template(
                skeleton=connection_line(marked[0], 0),
                end=_ref(marked[0].event.ts_ns, inputs),
                steps=tuple(
                    (_ref(step.at_ns, inputs), _ref(step.since_ns, inputs)) for step in conn.steps
                ),
                states=frozenset(conn.path()),
                classification=conn.classification,
            )
        except ValueError:
            return None
        if template.render(record, self.offset_ns) != connection_line(real[0], self.offset_ns):
            return None
        return template

    def _write(self, line: dict[str, object]) -> None:
        if self.style == "json":
            self.out.write(json_lines.dumps(line) + "\n")
        else:
            self.out.write(format_connection_text(line, self.layout, self._clock) + "\n")

    def summary(self, command: str = "watch") -> str:
        text = (
            f"synfin {command}: {self.counters.seen} connection records, {self.counters.lost} lost"
        )
        text += self.counters.losses()
        endings: Counter[str] = self.counters.endings
        if endings:
            listed = ", ".join(f"{count} {how}" for how, count in endings.most_common())
            text += f"; {sum(endings.values())} connection(s) ended: {listed}"
        return text


class _MissingType:
    pass


_Missing = _MissingType()
