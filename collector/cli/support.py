"""Plumbing every synfin command shares: one-line errors, signals, common options."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, ParamSpec, TypeVar

import click

from synfin.engine.states import State
from synfin.errors import EXIT_FAILURE, SynfinError
from synfin.kernel.state_probe import ProbeOptions
from synfin.records.addresses import AF_INET, AF_INET6, Network, parse_network
from synfin.views.filters import OutputFilter, parse_state
from synfin.views.lines import NARROW, WIDE, Layout

P = ParamSpec("P")
R = TypeVar("R")

FAMILIES = {"any": 0, "ipv4": AF_INET, "ipv6": AF_INET6}


port_option = click.option(
    "-p",
    "--port",
    "ports",
    type=click.IntRange(1, 65535),
    multiple=True,
    help="Only connections with this local or remote port (repeatable).",
)
family_option = click.option(
    "--family",
    type=click.Choice(sorted(FAMILIES)),
    default="any",
    show_default=True,
    help="Only this IP family.",
)

tracefs_option = click.option(
    "--tracefs",
    "tracefs_root",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="SYNFIN_TRACEFS",
    help="Where tracefs is mounted (default: /sys/kernel/tracing, then debugfs).",
)


def duration_option(command: Callable[P, R]) -> Callable[P, R]:
    return click.option(
        "--duration",
        type=click.FloatRange(min=0, min_open=True),
        help="Stop after this many seconds (default: until Ctrl-C).",
    )(command)


def ring_buffer_pages_option(command: Callable[P, R]) -> Callable[P, R]:
    return click.option(
        "--ring-buffer-pages",
        type=click.IntRange(1, 1 << 18),
        callback=power_of_two,
        default=ProbeOptions.ringbuf_pages,
        show_default=True,
        help="Ring buffer size in pages (a power of two); raise it if records are lost.",
    )(command)


def escaped(text: str) -> str:
    """What cannot be printed, written as its escape: an argument is arbitrary bytes, and a
    line break in one must not split the one line an error is."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


@contextmanager
def one_line_errors() -> Iterator[None]:
    try:
        yield
    except click.ClickException as error:
        error.message = escaped(error.message)
        raise


class OneLineErrors(click.Group):
    """The top command: click quotes a bad argument as it was given (an unexpected extra
    argument, an unknown option), so its errors are escaped wherever click raises them."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with one_line_errors():
            return super().invoke(ctx)


class BadInput(click.ClickException):
    """Bad input found while click reads the options (the --config file's contents): one line
    and exit 1, worded as a SynfinError, not as a usage error (exit 2)."""

    exit_code = EXIT_FAILURE

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(str(SynfinError(problem, fix)))

    def show(self, file: object = None) -> None:
        click.echo(f"synfin: error: {self.format_message()}", err=True)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a SynfinError into one line on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except SynfinError as error:
            click.echo(f"synfin: error: {error}", err=True)
            sys.exit(error.exit_code)
        except click.ClickException:
            raise  # click reports usage errors itself, with exit code 2
        except Exception as error:
            # A bug, not bad input: still one line, with the way to the traceback.
            if os.environ.get("SYNFIN_DEBUG"):
                raise
            click.echo(
                f"synfin: internal error: {type(error).__name__}: {error} "
                "(fix: rerun with SYNFIN_DEBUG=1 for the traceback, and report it)",
                err=True,
            )
            sys.exit(EXIT_FAILURE)

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


def silence_stdout() -> None:
    """The reader went away (`synfin watch | head`): not an error. Point stdout at /dev/null
    so the interpreter's final flush does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def parse_each(
    parse: Callable[[str], R],
) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], tuple[R, ...]]:
    def callback(
        _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
    ) -> tuple[R, ...]:
        try:
            return tuple(parse(value) for value in values)
        except ValueError as problem:
            raise click.BadParameter(escaped(str(problem))) from None

    return callback


def view_filters(command: Callable[..., R]) -> Callable[..., R]:
    """Add the options that choose and shape the lines of a view (--host, --state, --pid,
    --json, --csv, --timestamps, --wide); the command receives them as ``view_options``."""

    @click.option(
        "--host",
        "networks",
        multiple=True,
        callback=parse_each(parse_network),
        help="Only connections with a local or remote address in this address or CIDR "
        "(repeatable).",
    )
    @click.option(
        "--state",
        "states",
        multiple=True,
        callback=parse_each(parse_state),
        help="Only steps into or out of this state, e.g. TIME-WAIT (repeatable), and the "
        "verdicts of connections that passed through it.",
    )
    @click.option(
        "--pid",
        "pids",
        type=click.IntRange(min=1),
        multiple=True,
        help="Only connections owned by this process (repeatable): the one seen acting on the "
        "socket in its own context.",
    )
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    @click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
    @click.option(
        "--timestamps",
        type=click.Choice(["absolute", "relative"]),
        default="absolute",
        show_default=True,
        help="Wall-clock times, or seconds since the first event.",
    )
    @click.option(
        "--wide", is_flag=True, help="Full-width addresses (IPv6) and the network namespace."
    )
    @functools.wraps(command)
    def wrapper(
        networks: tuple[Network, ...],
        states: tuple[State, ...],
        pids: tuple[int, ...],
        as_json: bool,
        as_csv: bool,
        timestamps: str,
        wide: bool,
        **kwargs: object,
    ) -> R:
        if as_json and as_csv:
            raise click.UsageError("choose one of --json and --csv")
        view_options = ViewOptions(
            shown=OutputFilter(networks, frozenset(states), frozenset(pids)),
            style="json" if as_json else "csv" if as_csv else "text",
            relative=timestamps == "relative",
            layout=WIDE if wide else NARROW,
        )
        return command(view_options=view_options, **kwargs)

    return wrapper


@dataclass(frozen=True)
class ViewOptions:
    """How a live or replayed view shows the engine's outputs (collector/views/watch.py)."""

    shown: OutputFilter
    style: str
    relative: bool
    layout: Layout
