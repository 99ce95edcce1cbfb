"""``synfin replay``: a recording through the lifecycle engine, as the live view showed it.

A recording of per-step events replays as ``synfin watch``; one of connection records (its
header says which) as ``synfin watch --per-connection``. Needs neither root nor BPF.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from synfin.cli.support import ViewOptions, reports_errors, silence_stdout, view_filters
from synfin.engine.lifecycle import Engine
from synfin.errors import SynfinError
from synfin.records import recording
from synfin.views.connections import ConnectionView
from synfin.views.watch import View


@click.command()
@click.argument("path", metavar="RECORDING", type=click.Path(path_type=Path, dir_okay=False))
@view_filters
@reports_errors
def replay(path: Path, view_options: ViewOptions) -> None:
    """Run a recording through the lifecycle engine, as `watch` would have shown it.

    Needs neither root nor BPF.
    """
    with recording.Reader(path) as reader:
        if reader.header.records == recording.CONNECTIONS:
            replay_connections(reader, view_options)
            return
        view = View(
            out=sys.stdout,
            engine=Engine(reader.header.description),
            style=view_options.style,
            offset_ns=reader.header.clock_offset_ns,
            shown=view_options.shown,
            relative=view_options.relative,
            layout=view_options.layout,
        )
        view.header()
        _replay_into(reader, view.on_event)  # type: ignore[arg-type]
    click.echo(view.summary("replay"), err=True)


def _replay_into(reader: recording.Reader, feed: Callable[[object], None]) -> None:
    try:
        for item in reader:
            feed(item)
    except BrokenPipeError:
        silence_stdout()


def replay_connections(reader: recording.Reader, view_options: ViewOptions) -> None:
    if view_options.style == "csv":
        raise SynfinError(
            "a per-connection recording replays as text or JSON lines, not CSV",
            "use --json, or drop --csv",
        )
    view = ConnectionView(
        out=sys.stdout,
        description=reader.header.description,
        style=view_options.style,
        offset_ns=reader.header.clock_offset_ns,
        shown=view_options.shown,
        layout=view_options.layout,
    )
    view.header()
    _replay_into(reader, view.on_record)  # type: ignore[arg-type]
    click.echo(view.summary("replay"), err=True)
