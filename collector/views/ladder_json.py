"""The ladder as one JSON object per connection (schema: schemas/trace.schema.json)."""

from __future__ import annotations

from synfin.ladder.layout import Ladder, Mark
from synfin.records.addresses import family_name
from synfin.units import MONOTONIC_TO_WALL_NS


def _mark(mark: Mark, end: str, start_ns: int) -> dict[str, object]:
    return {
        "end": end,
        "state": mark.state.value,
        "at_s": None if mark.at_ns is None else (mark.at_ns - start_ns) / 1e9,
        "evidence": mark.evidence,
        "how": mark.how,
    }


def to_dict(ladder: Ladder, clock_offset_ns: int = MONOTONIC_TO_WALL_NS) -> dict[str, object]:
    dialogue, start = ladder.dialogue, ladder.start_ns
    names = ("client", "server")
    ends = {}
    for name, end in zip(names, dialogue.ends, strict=True):
        conn = end.kernel.connection if end.kernel else None
        ends[name] = {
            "endpoint": end.endpoint,
            "on_host": end.kernel is not None,
            "pid": (conn.owner_pid or None) if conn else None,
            "comm": (conn.comm or None) if conn else None,
            "netns": (conn.netns or None) if conn else None,
        }
    segments = [
        {
            "at_s": (part.segment.ts_ns - start) / 1e9,
            "from": names[ladder.column(part.sender)],
            "flags": part.segment.flag_names,
            "seq": part.segment.seq,
            "ack": part.segment.ack if part.segment.flags & 0x10 else None,
            "payload_len": part.segment.payload_len,
            "role": part.role.value,
            "label": part.label,
        }
        for part in ladder.parts
    ]
    states = [
        _mark(mark, names[column], start)
        for row in ladder.rows
        for column, marks in enumerate(row.marks)
        for mark in marks
    ]
    initial = {
        name: (mark.state.value if mark else None)
        for name, mark in zip(names, ladder.initial, strict=True)
    }
    symbols = ladder.symbols
    return {
        "type": "connection",
        "family": family_name(dialogue.family),
        "start_time": (start + clock_offset_ns) / 1e9,
        "client": ends["client"],
        "server": ends["server"],
        "handshake_seen": dialogue.handshake_seen,
        "complete": not dialogue.stopped_early,
        "symbols": {name: getattr(symbols, name) for name in ("x", "y", "u", "v", "w")},
        "initial_states": initial,
        "segments": segments,
        "states": states,
        "checks": [check.to_dict() for check in ladder.checks],
    }
