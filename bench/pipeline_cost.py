"""Where a live view's time goes per record, without the kernel: a recording replayed through
each stage the live path runs (unpack and build, lifecycle engine, JSON line).

    .venv/bin/python bench/pipeline_cost.py RECORDING [--repeat N]

A recording of `synfin record` (events) gives microseconds per event for the per-step view;
one of `synfin record --per-connection` gives microseconds per record for the per-connection
view (templates included). Records are packed into the probe's layout first, so the unpack
is the one the ring buffer reader does. Needs neither root nor BPF.
"""

from __future__ import annotations

import argparse
import gc
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

from synfin.engine.lifecycle import Engine
from synfin.records import recording
from synfin.records.connections import (
    CONNECTION_LAYOUT,
    connection_from_fields,
    encode_connection,
)
from synfin.records.events import EVENT_LAYOUT, encode, from_fields
from synfin.views.connections import ConnectionView
from synfin.views.lines import format_json


def timed(label: str, count: int, run: Callable[[], object]) -> None:
    # Collector off while timing: these stages keep every result (the live path drops each at
    # once), and collecting that growing heap would be counted against them.
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    run()
    gc.enable()
    print(f"{label:<28} {1e6 * (time.perf_counter() - start) / count:6.2f} us")


def per_step(items: list, reader: recording.Reader) -> None:
    fields = [EVENT_LAYOUT.unpack(encode(event)) for event in items]
    events = [from_fields(f) for f in fields]
    count = len(events)
    print(f"{count:,} events")
    timed("unpack and build", count, lambda: [from_fields(f) for f in fields])
    engine = Engine(reader.header.description)
    outputs: list = []
    timed("lifecycle engine", count, lambda: [outputs.extend(engine.feed(e)) for e in events])
    timed("JSON lines (per event)", count, lambda: [format_json(o, 0) for o in outputs])


def per_connection(items: list, reader: recording.Reader) -> None:
    fields = [CONNECTION_LAYOUT.unpack(encode_connection(record)) for record in items]
    records = [connection_from_fields(f) for f in fields]
    count = len(records)
    print(f"{count:,} connection records")
    timed("unpack and build", count, lambda: [connection_from_fields(f) for f in fields])
    view = ConnectionView(out=io.StringIO(), description=reader.header.description)

    def read() -> None:
        for record in records:
            view.on_record(record)

    timed("view (template, JSON line)", count, read)
    print(f"  {len(view.templates)} shapes, {view.read_by_engine} records read by the engine")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", type=Path)
    parser.add_argument("--repeat", type=int, default=1, help="replay the recording N times")
    args = parser.parse_args()
    with recording.Reader(args.recording) as reader:
        items = list(reader) * args.repeat
        if reader.header.records == recording.CONNECTIONS:
            per_connection(items, reader)
        else:
            per_step(items, reader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
