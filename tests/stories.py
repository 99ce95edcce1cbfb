"""A connection's story, as both stream modes tell it: for comparing ``watch`` (one record per
step) with ``--per-connection`` (one record per socket end) over the same connections.

Both modes' lines have the ``finished``/``connection`` schema (synfin.views.lines.
connection_line). A story is such a line without its times, keyed by the socket end; times
are compared separately, within a tolerance, since two probes stamp the same kernel moment a
few microseconds apart.

One difference is by design: the step stream can use evidence from the other end of a
connection on this host (the peer's FIN, seen at its LAST-ACK) that a record sent when its own
end is over cannot. Such a step into TIME-WAIT is the same arrow, inferred or observed alike,
but its note and time may differ, so its note is not compared.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable

from synfin.engine.connection import Finished
from synfin.engine.lifecycle import Engine
from synfin.records.connections import ConnectionRecord
from synfin.records.description import KernelDescription
from synfin.records.events import Event
from synfin.views.connections import ConnectionView
from synfin.views.lines import connection_line

Key = tuple[object, ...]
CROSS_END_NOTES = ("peer's FIN", "confirms the inference", "entry not observed")


def _step_story(step: dict[str, object]) -> tuple[object, ...]:
    how = str(step["how"])
    if step["to"] == "TIME-WAIT" and any(note in how for note in CROSS_END_NOTES):
        how = "(evidence differs by mode)"
    return (step["from"], step["to"], step["observed"], how)


def story(line: dict[str, object]) -> tuple[Key, tuple[object, ...]]:
    key = (line["netns"], line["local"], line["remote"], line["skaddr"])
    told = (
        line["family"],
        line["owner_pid"],
        line["comm"],
        tuple(line["path"]),  # type: ignore[arg-type]
        tuple(_step_story(step) for step in line["steps"]),  # type: ignore[attr-defined]
        tuple(sorted((line["classification"] or {}).items())),  # type: ignore[attr-defined]
    )
    return key, told


def lines_from_events(events: Iterable[Event], description: KernelDescription) -> list[dict]:
    engine = Engine(description)
    return [
        connection_line(output, 0)
        for event in events
        for output in engine.feed(event)
        if isinstance(output, Finished)
    ]


def lines_from_connections(
    records: Iterable[ConnectionRecord], description: KernelDescription
) -> tuple[list[dict], ConnectionView]:
    out = io.StringIO()
    view = ConnectionView(out=out, description=description, offset_ns=0)
    for record in records:
        view.on_record(record)
    return [json.loads(line) for line in out.getvalue().splitlines()], view


def stories(lines: Iterable[dict]) -> dict[Key, tuple[object, ...]]:
    return dict(story(line) for line in lines)


def step_times(lines: Iterable[dict]) -> dict[Key, list[tuple[int | None, bool]]]:
    """Each socket end's times (each step's moment, and how long it stayed in the state it
    left), each with whether its evidence differs by mode."""
    times: dict[Key, list[tuple[int | None, bool]]] = {}
    for line in lines:
        key = times.setdefault(story(line)[0], [])
        entered_differently = False  # the time in a state entered on such evidence, too
        for step in line["steps"]:
            differs = _step_story(step)[3] == "(evidence differs by mode)"
            spent = step["time_in_from_s"]
            key.append((step["at_ns"], differs))
            spent_ns = None if spent is None else round(spent * 1e9)
            key.append((spent_ns, differs or entered_differently))
            entered_differently = differs
    return times


def assert_same_story(by_step: list[dict], by_connection: list[dict], tolerance_ns: int) -> None:
    """Every socket end told the same way by both modes, its times within ``tolerance_ns``."""
    assert stories(by_connection) == stories(by_step)
    connection_times = step_times(by_connection)
    for key, times in step_times(by_step).items():
        for (mine, differs), (theirs, _) in zip(times, connection_times[key], strict=True):
            if differs:
                continue
            if mine is None or theirs is None:
                assert mine == theirs, (key, times, connection_times[key])
            else:
                assert abs(mine - theirs) <= tolerance_ns, (key, times, connection_times[key])
