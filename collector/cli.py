"""The ``synfin`` command line: a thin click layer over the modules that do the work.

Errors are reported here, once, as one line naming the problem and the fix, with the exit code
of their class (collector/errors.py).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import ParamSpec, TypeVar

import click

from collector import doctor as doctor_checks
from collector.errors import EXIT_FAILURE, EXIT_OK, SynfinError
from collector.events import AF_INET, AF_INET6
from collector.probes import ProbeOptions, StateProbe
from collector.watch import Watcher

P = ParamSpec("P")
R = TypeVar("R")

FAMILIES = {"any": 0, "ipv4": AF_INET, "ipv6": AF_INET6}


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a SynfinError into one line on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except SynfinError as error:
            click.echo(f"synfin: error: {error}", err=True)
            sys.exit(error.exit_code)

    return wrapper


def power_of_two(_ctx: click.Context, _param: click.Parameter, value: int) -> int:
    if value & (value - 1):
        raise click.BadParameter(f"{value} is not a power of two (try 256)")
    return value


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], bool]]:
    """Turn SIGINT and SIGTERM into a flag the caller polls; restore the old handlers after."""
    stopping = False

    def handle(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "SYNFIN"}
)
@click.version_option(package_name="synfin")
def main() -> None:
    """Watch TCP handshakes and teardowns with eBPF, in the textbook's states."""


@main.command()
@click.option(
    "--tracefs",
    "tracefs_root",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where tracefs is mounted (default: /sys/kernel/tracing, then debugfs).",
)
@reports_errors
def doctor(tracefs_root: Path | None) -> None:
    """Check that synfin can run here, and say what it can observe."""
    checks = doctor_checks.run_checks(tracefs_root)
    for check in checks:
        click.echo(check.line())
    ok = doctor_checks.passed(checks)
    click.echo(
        "synfin can run here." if ok else "synfin cannot run here until the FAIL lines are fixed."
    )
    sys.exit(EXIT_OK if ok else EXIT_FAILURE)


@main.command()
@click.option(
    "-p",
    "--port",
    "ports",
    type=click.IntRange(1, 65535),
    multiple=True,
    help="Only connections with this local or remote port (repeatable).",
)
@click.option(
    "--family",
    type=click.Choice(sorted(FAMILIES)),
    default="any",
    show_default=True,
    help="Only this IP family.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
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
@click.option(
    "--tracefs",
    "tracefs_root",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where tracefs is mounted.",
)
@reports_errors
def watch(
    ports: tuple[int, ...],
    family: str,
    as_json: bool,
    duration: float | None,
    ring_buffer_pages: int,
    tracefs_root: Path | None,
) -> None:
    """Show every TCP state change as it happens, one line each.

    Columns: time, local and remote address, the documented transition, how long the socket
    stayed in the old state (blank when synfin did not see it enter), and the process, shown
    only when the change ran in that process's own context (connect, listen, close): changes
    driven by an arriving segment or a timer run in softirq, where the current process is
    whoever happened to be interrupted.
    """
    options = ProbeOptions(ringbuf_pages=ring_buffer_pages, tracefs_root=tracefs_root)
    watcher = Watcher(out=sys.stdout, as_json=as_json)
    deadline = time.monotonic() + duration if duration else None
    with StateProbe(options) as probe, stop_on_signals() as stopping:
        probe.set_filter(ports, FAMILIES[family])
        probe.open_stream(watcher.on_record)
        click.echo("synfin watch: tracing TCP state changes (Ctrl-C to end)", err=True)
        watcher.header()
        try:
            while not stopping() and (deadline is None or time.monotonic() < deadline):
                probe.poll(100)
                sys.stdout.flush()
            probe.drain()
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`synfin watch | head`): not an error. Point stdout at
            # /dev/null so the interpreter's final flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        watcher.counters.lost = probe.stream_stats().lost
    click.echo(watcher.summary(), err=True)
