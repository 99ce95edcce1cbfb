"""The ``synfin`` command line: a thin click layer over the modules that do the work.

Errors are reported here, once, as one line naming the problem and the fix, with the exit code
of their class (collector/errors.py).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from synfin.cli.lab import lab_command
from synfin.cli.run import load_config_file, run
from synfin.cli.support import (
    FAMILIES,
    R,
    ViewOptions,
    family_option,
    port_option,
    power_of_two,
    reports_errors,
    silence_stdout,
    stop_on_signals,
    tracefs_option,
    view_filters,
)
from synfin.cli.trace import trace_command
from synfin.engine.lifecycle import Engine
from synfin.errors import EXIT_FAILURE, EXIT_OK, SynfinError
from synfin.kernel import doctor as doctor_checks
from synfin.kernel.features import TIMEWAIT_CAPABILITY
from synfin.kernel.sock_diag import Reconciler, Scope
from synfin.kernel.state_probe import ProbeOptions, TcpProbe
from synfin.records import recording
from synfin.records.events import DecodeError, decode
from synfin.views.watch import MONOTONIC_TO_WALL_NS, View, ViewCounters

__all__ = ["load_config_file", "main", "run"]


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "SYNFIN"}
)
@click.version_option(package_name="synfin")
def main() -> None:
    """Watch TCP handshakes and teardowns with eBPF, in the textbook's states."""


@main.command()
@tracefs_option
@reports_errors
def doctor(tracefs_root: Path | None) -> None:
    """Check that synfin can run here, and say what it observes and what it infers."""
    checks = doctor_checks.run_checks(tracefs_root)
    for check in checks:
        click.echo(check.line())
    ok = doctor_checks.passed(checks)
    click.echo(
        "synfin can run here." if ok else "synfin cannot run here until the FAIL lines are fixed."
    )
    sys.exit(EXIT_OK if ok else EXIT_FAILURE)


@dataclass(frozen=True)
class StreamRequest:
    """What to stream: the options every streaming command shares."""

    ports: tuple[int, ...]
    family: str
    duration: float | None
    ring_buffer_pages: int
    tracefs_root: Path | None


def stream_options(command: Callable[..., R]) -> Callable[..., R]:
    """Add the shared streaming options; the command receives them as ``request``."""

    @port_option
    @family_option
    @click.option(
        "--duration",
        type=click.FloatRange(min=0, min_open=True),
        help="Stop after this many seconds (default: until Ctrl-C).",
    )
    @click.option(
        "--ring-buffer-pages",
        type=click.IntRange(1, 1 << 18),
        callback=power_of_two,
        default=ProbeOptions.ringbuf_pages,
        show_default=True,
        help="Ring buffer size in pages (a power of two); raise it if events are lost.",
    )
    @tracefs_option
    @functools.wraps(command)
    def wrapper(
        ports: tuple[int, ...],
        family: str,
        duration: float | None,
        ring_buffer_pages: int,
        tracefs_root: Path | None,
        **kwargs: object,
    ) -> R:
        request = StreamRequest(ports, family, duration, ring_buffer_pages, tracefs_root)
        return command(request=request, **kwargs)

    return wrapper


@dataclass
class Periodic:
    """Something to run every ``interval`` seconds while streaming."""

    interval: float
    run: Callable[[], None]
    due: float = 0.0

    def maybe_run(self, now: float) -> None:
        if now >= self.due:
            self.due = now + self.interval
            self.run()


def stream(
    request: StreamRequest,
    command: str,
    on_record: Callable[[bytes], None],
    on_attach: Callable[[TcpProbe], None] = lambda _probe: None,
    periodic: Periodic | None = None,
) -> int:
    """Attach, deliver records until a signal or the duration, detach; return records lost."""
    options = ProbeOptions(
        ringbuf_pages=request.ring_buffer_pages, tracefs_root=request.tracefs_root
    )
    deadline = time.monotonic() + request.duration if request.duration else None
    with TcpProbe(options) as probe, stop_on_signals() as stopping:
        probe.set_filter(request.ports, FAMILIES[request.family])
        click.echo(f"synfin {command}: tracing TCP state changes (Ctrl-C to end)", err=True)
        on_attach(probe)
        probe.open_stream(on_record)
        try:
            while not stopping() and (deadline is None or time.monotonic() < deadline):
                probe.poll(100)
                if periodic is not None:
                    periodic.maybe_run(time.monotonic())
                sys.stdout.flush()
            probe.drain()
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
        return probe.stream_stats().lost


@main.command()
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
    view = View(
        out=sys.stdout,
        engine=Engine(),
        style=view_options.style,
        shown=view_options.shown,
        relative=view_options.relative,
        layout=view_options.layout,
    )
    scope = Scope(ports=frozenset(request.ports), family=FAMILIES[request.family])
    reconciler = Reconciler(view.engine, scope) if reconcile_every else None

    def attached(probe: TcpProbe) -> None:
        probe.configure(view.engine)
        view.header()
        if reconciler is not None:
            reconciler.seed()

    periodic = None
    if reconciler is not None and reconcile_every:
        check = reconciler.check
        periodic = Periodic(reconcile_every, lambda: view.reconciled(*check()))
        periodic.due = time.monotonic() + reconcile_every
    view.counters.lost = stream(request, "watch", view.on_record, attached, periodic)
    click.echo(view.summary(), err=True)


@main.command()
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
    counters = ViewCounters()
    writers: list[recording.Writer] = []

    def attached(probe: TcpProbe) -> None:
        header = recording.Header(
            clock_offset_ns=MONOTONIC_TO_WALL_NS,
            capabilities={c.name: c.available for c in probe.features.capabilities},
            reset_reasons=dict(probe.features.reset_reasons),
        )
        writers.append(recording.Writer(handle, header))

    def on_record(raw: bytes) -> None:
        try:
            event = decode(raw)
        except DecodeError:
            counters.undecodable += 1
            return
        counters.seen += 1
        writers[0].write(event)

    with handle:
        counters.lost = stream(request, "record", on_record, attached)
    click.echo(
        f"synfin record: {counters.seen} events, {counters.lost} lost, written to {output}",
        err=True,
    )


@main.command()
@click.argument("path", metavar="RECORDING", type=click.Path(path_type=Path, dir_okay=False))
@view_filters
@reports_errors
def replay(path: Path, view_options: ViewOptions) -> None:
    """Run a recording through the lifecycle engine, as `watch` would have shown it.

    Needs neither root nor BPF.
    """
    with recording.Reader(path) as reader:
        engine = Engine(
            reset_reasons=reader.header.reset_reasons,
            sees_timewait=reader.header.capabilities.get(TIMEWAIT_CAPABILITY, True),
        )
        view = View(
            out=sys.stdout,
            engine=engine,
            style=view_options.style,
            offset_ns=reader.header.clock_offset_ns,
            shown=view_options.shown,
            relative=view_options.relative,
            layout=view_options.layout,
        )
        view.header()
        try:
            for event in reader:
                view.on_event(event)
        except BrokenPipeError:
            silence_stdout()
    click.echo(view.summary("replay"), err=True)


main.add_command(run)
main.add_command(lab_command)
main.add_command(trace_command)
