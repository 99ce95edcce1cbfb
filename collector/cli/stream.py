"""``synfin watch`` and ``synfin record``: the state probe's event stream (replay: replay.py).

The probe is attached first; the lifecycle engine is then built from what it says the kernel
shows (the same description a recording's header carries, so replay builds the same engine),
and the record pump moves events to the view or the recording until a signal or --duration.
With --per-connection the probe sends one record per socket end instead of one per step
(synfin.records.connections), and the view writes one line per finished socket end.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from synfin.cli.support import (
    FAMILIES,
    R,
    ViewOptions,
    duration_option,
    family_option,
    port_option,
    reports_errors,
    ring_buffer_pages_option,
    silence_stdout,
    stop_on_signals,
    tracefs_option,
    view_filters,
)
from synfin.engine.lifecycle import Engine
from synfin.engine.reconcile import Reconciler, Scope
from synfin.errors import SynfinError
from synfin.kernel import sock_diag
from synfin.kernel.state_probe import ProbeOptions, TcpProbe
from synfin.records import recording
from synfin.records.connections import CONNECTION_FORMAT, ConnectionRecord
from synfin.records.events import EVENT_FORMAT, Event
from synfin.records.pump import Periodic, Pump, Stream
from synfin.units import MONOTONIC_TO_WALL_NS
from synfin.views.connections import ConnectionView
from synfin.views.watch import View, ViewCounters, skipped_note, unfollowed_note

EventSink = Callable[[Event], None] | Callable[[ConnectionRecord], None]


@dataclass(frozen=True)
class StreamRequest:
    """What to stream: the options every streaming command shares."""

    ports: tuple[int, ...]
    family: str
    duration: float | None
    ring_buffer_pages: int
    tracefs_root: Path | None
    per_connection: bool = False
    max_sockets: int = ProbeOptions.max_sockets


def stream_options(command: Callable[..., R]) -> Callable[..., R]:
    """Add the shared streaming options; the command receives them as ``request``."""

    @port_option
    @family_option
    @duration_option
    @ring_buffer_pages_option
    @click.option(
        "--per-connection",
        is_flag=True,
        help="One line per socket end when that end is over (its whole path, the time in "
        "each state, how it opened and closed) instead of one per step: assembled in the "
        "kernel, it keeps up with far busier hosts.",
    )
    @click.option(
        "--max-sockets",
        type=click.IntRange(64, 1 << 24),
        default=ProbeOptions.max_sockets,
        show_default=True,
        help="Sockets followed at once (timewait sockets included); beyond it the least "
        "recently used is no longer followed, and the summary counts it.",
    )
    @tracefs_option
    @functools.wraps(command)
    def wrapper(
        ports: tuple[int, ...],
        family: str,
        duration: float | None,
        ring_buffer_pages: int,
        per_connection: bool,
        max_sockets: int,
        tracefs_root: Path | None,
        **kwargs: object,
    ) -> R:
        request = StreamRequest(
            ports, family, duration, ring_buffer_pages, tracefs_root, per_connection, max_sockets
        )
        return command(request=request, **kwargs)

    return wrapper


@dataclass(frozen=True)
class Streamed:
    decoded: int
    undecodable: int
    lost: int  # records the ring buffer had no room for
    unfollowed: int  # sockets dropped from the probe's full socket table
    skipped: int  # runs of the probe's programs the kernel skipped (synfin_probe_missed_runs)

    def tell(self, counters: ViewCounters) -> None:
        """Give a view's summary what was lost on the way to it."""
        counters.lost, counters.undecodable = self.lost, self.undecodable
        counters.unfollowed, counters.skipped = self.unfollowed, self.skipped


def stream(
    request: StreamRequest,
    command: str,
    start: Callable[[TcpProbe], tuple[EventSink, Sequence[Periodic]]],
) -> Streamed:
    """Attach; ``start`` gets the probe and returns where events go (and what to run between
    polls); deliver until a signal or the duration; detach."""
    options = ProbeOptions(
        ringbuf_pages=request.ring_buffer_pages,
        tracefs_root=request.tracefs_root,
        per_connection=request.per_connection,
        max_sockets=request.max_sockets,
    )
    record_format = CONNECTION_FORMAT if request.per_connection else EVENT_FORMAT
    deadline = time.monotonic() + request.duration if request.duration else None
    with TcpProbe(options) as probe, stop_on_signals() as stopping:
        probe.set_filter(request.ports, FAMILIES[request.family])
        click.echo(f"synfin {command}: tracing TCP state changes (Ctrl-C to end)", err=True)
        sink, periodic = start(probe)
        pump = Pump([Stream(probe, record_format, sink)])  # type: ignore[arg-type]

        def keep_going() -> bool:
            return not stopping() and (deadline is None or time.monotonic() < deadline)

        try:
            pump.run(keep_going, periodic, after_poll=sys.stdout.flush)
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
        unfollowed = probe.tracking_stats().evicted
        skipped = sum(probe.missed_runs().values())
        decoded = pump.streams[0].tally.decoded
        return Streamed(decoded, pump.undecodable, pump.lost(), unfollowed, skipped)


@click.command()
@stream_options
@view_filters
@click.option(
    "--reconcile",
    "reconcile_every",
    type=click.FloatRange(min=0.1),
    help="Every this many seconds, compare synfin's count of sockets per state with the "
    "kernel's (sock_diag) and show any difference. Also learns the sockets that existed "
    "before synfin started.",
)
@reports_errors
def watch(request: StreamRequest, view_options: ViewOptions, reconcile_every: float | None) -> None:
    """Show every TCP connection's steps through the textbook states as they happen.

    One line per documented transition: time, local and remote address, the transition
    (`->` observed in the kernel, `~>` inferred from other evidence, named in NOTE), how long
    the socket stayed in the old state (blank when synfin did not see it enter), and the
    owning process: the one seen acting on the socket in its own context (connect, listen,
    close), never one that merely happened to be interrupted by a softirq. A line with `=`
    classifies a connection when its socket goes away.
    """
    if request.per_connection:
        if reconcile_every:
            raise SynfinError(
                "--reconcile compares each step with the kernel; --per-connection has no steps",
                "drop one of the two options",
            )
        watch_connections(request, view_options)
        return
    views: list[View] = []

    def start(probe: TcpProbe) -> tuple[EventSink, list[Periodic]]:
        view = View(
            out=sys.stdout,
            engine=Engine(probe.description()),
            style=view_options.style,
            shown=view_options.shown,
            relative=view_options.relative,
            layout=view_options.layout,
        )
        views.append(view)
        view.header()
        if not reconcile_every:
            return view.on_event, []
        scope = Scope(ports=frozenset(request.ports), family=FAMILIES[request.family])
        reconciler = Reconciler(view.engine, sock_diag.census, scope)
        reconciler.seed()
        check = Periodic(reconcile_every, lambda: view.reconciled(*reconciler.check()))
        check.due = time.monotonic() + reconcile_every
        return view.on_event, [check]

    streamed = stream(request, "watch", start)
    view = views[0]
    streamed.tell(view.counters)
    click.echo(view.summary(), err=True)


def watch_connections(request: StreamRequest, view_options: ViewOptions) -> None:
    if view_options.style == "csv":
        raise SynfinError(
            "--per-connection writes text or JSON lines, not CSV", "use --json, or drop --csv"
        )
    views: list[ConnectionView] = []

    def start(probe: TcpProbe) -> tuple[EventSink, list[Periodic]]:
        view = ConnectionView(
            out=sys.stdout,
            description=probe.description(),
            style=view_options.style,
            shown=view_options.shown,
            layout=view_options.layout,
        )
        views.append(view)
        view.header()
        return view.on_record, []

    streamed = stream(request, "watch", start)
    view = views[0]
    streamed.tell(view.counters)
    click.echo(view.summary(), err=True)


@click.command()
@stream_options
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Write the recording here (JSON lines).",
)
@reports_errors
def record(request: StreamRequest, output: Path) -> None:
    """Record decoded kernel events to a file, for `synfin replay` and test fixtures."""
    try:
        handle = output.open("w")
    except OSError as error:
        raise SynfinError(
            f"cannot write {output}: {error.strerror}", "choose a writable path"
        ) from None

    def start(probe: TcpProbe) -> tuple[EventSink, list[Periodic]]:
        header = recording.Header(
            clock_offset_ns=MONOTONIC_TO_WALL_NS,
            description=probe.description(),
            records=recording.CONNECTIONS if request.per_connection else recording.EVENTS,
        )
        return recording.Writer(handle, header).write, []

    with handle:
        streamed = stream(request, "record", start)
    what = "connection records" if request.per_connection else "events"
    summary = f"synfin record: {streamed.decoded} {what}, {streamed.lost} lost"
    if streamed.unfollowed:
        summary += f", {unfollowed_note(streamed.unfollowed)}"
    if streamed.skipped:
        summary += f", {skipped_note(streamed.skipped)}"
    click.echo(f"{summary}, written to {output}", err=True)
