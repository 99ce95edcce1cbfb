"""``synfin trace``: each connection drawn as the textbook's ladder, with the rules checked."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

import click

from synfin.cli.support import (
    FAMILIES,
    family_option,
    parse_each,
    port_option,
    reports_errors,
    silence_stdout,
    stop_on_signals,
    tracefs_option,
)
from synfin.engine.lifecycle import Engine
from synfin.errors import SynfinError
from synfin.kernel.namespaces import NETNS_DIR
from synfin.kernel.segment_probe import CaptureOptions, SegmentCapture
from synfin.kernel.state_probe import ProbeOptions, TcpProbe
from synfin.ladder.layout import Ladder
from synfin.ladder.tracer import TraceFilter, Tracer
from synfin.records import json_lines
from synfin.records.addresses import Network, parse_network
from synfin.records.events import EVENT_FORMAT
from synfin.records.pump import Periodic, Pump, Stream
from synfin.records.segments import SEGMENT_FORMAT
from synfin.views import ladder_json, ladder_svg, ladder_text

POLL_MS = 20
FLUSH_EVERY_S = 0.1


def _netns_path(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value) if "/" in value else NETNS_DIR / value
    if not path.exists():
        raise click.BadParameter(
            f"network namespace {value} does not exist (give a name from `ip netns list` or "
            "a path such as /proc/PID/ns/net)",
            param_hint="'--netns'",
        )
    return path


def _unicode_ok() -> bool:
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower()
    return encoding.replace("-", "") in {"utf8", "utf16", "utf32"}


@click.command("trace")
@port_option
@click.option(
    "--host",
    "networks",
    multiple=True,
    callback=parse_each(parse_network),
    help="Only connections with an end in this address or CIDR (repeatable).",
)
@click.option("--pid", type=click.IntRange(min=1), help="Only connections of this process.")
@family_option
@click.option(
    "-c", "--count", type=click.IntRange(min=1), help="Stop after drawing this many connections."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop after this many seconds, drawing open connections as far as they got.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "svg"]),
    default="text",
    show_default=True,
    help="text: the ladder in the terminal; json: one object per connection; svg: a picture "
    "(needs -o).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write here instead of standard output (required for --format svg).",
)
@click.option(
    "--time-wait",
    type=click.Choice(["wait", "skip"]),
    default="wait",
    show_default=True,
    help="wait: a connection is drawn when its TIME-WAIT has ended (2MSL, 60 s on Linux), "
    "so the 2MSL rule is checked; skip: draw it at the last ACK.",
)
@click.option(
    "--netns",
    help="Capture segments in this network namespace (a name from `ip netns list`, or a "
    "path); state events are seen in every namespace.",
)
@click.option(
    "--all-segments", is_flag=True, help="Draw data segments too, not only SYN, FIN, RST and "
    "their ACKs (use with --port)."
)  # fmt: skip
@click.option("--ascii", "ascii_only", is_flag=True, help="No box-drawing characters.")
@tracefs_option
@reports_errors
def trace_command(
    ports: tuple[int, ...],
    networks: tuple[Network, ...],
    pid: int | None,
    family: str,
    count: int | None,
    timeout: float | None,
    output_format: str,
    output: Path | None,
    time_wait: str,
    netns: str | None,
    all_segments: bool,
    ascii_only: bool,
    tracefs_root: Path | None,
) -> None:
    """Draw each TCP connection as the textbook ladder, from real segments and kernel states.

    Client (the end that sent the first SYN) on the left, server on the right, time going
    down: every SYN, FIN and RST with the ACK that answers it, labelled seq=x, ack=x+1 and so
    on from the connection's own numbers, each end's state where it changes, and the
    documented rules checked underneath.
    """
    if output_format == "svg" and output is None:
        raise click.UsageError("--format svg writes a picture to a file: add -o FILE.svg")
    capture_netns = _netns_path(netns)
    handle = _open_output(output) if output is not None else sys.stdout
    ladders: list[Ladder] = []
    unicode = not ascii_only and (output is not None or _unicode_ok())

    def draw(ladder: Ladder) -> None:
        if output_format == "svg":
            ladders.append(ladder)
        elif output_format == "json":
            handle.write(json_lines.dumps(ladder_json.to_dict(ladder)) + "\n")
        else:
            text = ladder_text.render(ladder, unicode=unicode, colour=output is None)
            click.echo(text, file=handle, nl=True)
        handle.flush()

    capture_options = CaptureOptions(all_segments=all_segments, netns=capture_netns)
    deadline = time.monotonic() + timeout if timeout else None
    shown = TraceFilter(networks, pid)
    try:
        with (
            TcpProbe(ProbeOptions(tracefs_root=tracefs_root)) as probe,
            SegmentCapture(capture_options) as capture,
            stop_on_signals() as stopping,
        ):
            tracer = Tracer(
                draw=draw,
                engine=Engine(probe.description()),
                shown=shown,
                wait_for_time_wait=time_wait == "wait",
                limit=count,
            )
            for source in (probe, capture):
                source.set_filter(ports, FAMILIES[family])
            pump = Pump(
                [
                    Stream(probe, EVENT_FORMAT, tracer.on_event),
                    Stream(capture, SEGMENT_FORMAT, tracer.on_segment),
                ],
                poll_ms=POLL_MS,
            )
            click.echo(
                "synfin trace: capturing TCP handshakes and teardowns (Ctrl-C to end)", err=True
            )

            def keep_going() -> bool:
                over = deadline is not None and time.monotonic() >= deadline
                return not stopping() and not tracer.done and not over

            # A look over every open connection: not on every poll.
            flush = Periodic(FLUSH_EVERY_S, lambda: tracer.flush(time.monotonic_ns()))
            pump.run(keep_going, [flush])
            if not tracer.done:
                tracer.finish()
            lost = pump.lost()
    except BrokenPipeError:
        silence_stdout()
        return
    finally:
        if handle is not sys.stdout:
            if output_format == "svg":
                handle.write(ladder_svg.render(ladders))
            handle.close()
    summary = (
        f"synfin trace: {tracer.counters.drawn} connection(s) drawn from "
        f"{tracer.counters.segments} segments and {tracer.counters.events} state events, "
        f"{lost} lost"
    )
    if pump.undecodable:
        summary += f", {pump.undecodable} undecodable"
    if tracer.tracker.forgotten:
        summary += f", {tracer.tracker.forgotten} unfinished connection(s) forgotten at the limit"
    if output is not None:
        summary += f", written to {output}"
    click.echo(summary, err=True)


def _open_output(path: Path) -> TextIO:
    try:
        return path.open("w")
    except OSError as error:
        raise SynfinError(
            f"cannot write {path}: {error.strerror}", "choose a writable path"
        ) from None
