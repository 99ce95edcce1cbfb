"""The ``synfin`` command line: a thin click layer over the modules that do the work.

Errors are reported here, once, as one line naming the problem and the fix, with the exit code
of their class (collector/errors.py).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import ParamSpec, TypeVar

import click
import yaml

from collector import doctor as doctor_checks
from collector import lab, recording
from collector.daemon import DEFAULT_LISTEN, Daemon, RunConfig
from collector.errors import EXIT_FAILURE, EXIT_OK, SynfinError
from collector.events import AF_INET, AF_INET6, DecodeError, decode
from collector.groundtruth import SCOPES
from collector.kernel import TIMEWAIT_CAPABILITY
from collector.lifecycle import Engine
from collector.probes import ProbeOptions, TcpProbe
from collector.snapshot import Reconciler, Scope
from collector.watch import MONOTONIC_TO_WALL_NS, View, ViewCounters

P = ParamSpec("P")
R = TypeVar("R")

FAMILIES = {"any": 0, "ipv4": AF_INET, "ipv6": AF_INET6}


tracefs_option = click.option(
    "--tracefs",
    "tracefs_root",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="SYNFIN_TRACEFS",
    help="Where tracefs is mounted (default: /sys/kernel/tracing, then debugfs).",
)


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
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--reconcile",
    "reconcile_every",
    type=click.FloatRange(min=0.1),
    help="Every this many seconds, compare synfin's count of sockets per state with the "
    "kernel's (sock_diag) and show any difference. Also learns the sockets that existed "
    "before synfin started.",
)
@reports_errors
def watch(request: StreamRequest, as_json: bool, reconcile_every: float | None) -> None:
    """Show every TCP connection's steps through the textbook states as they happen.

    One line per documented transition: time, local and remote address, the transition
    (`->` observed in the kernel, `~>` inferred from other evidence, named in NOTE), how long
    the socket stayed in the old state (blank when synfin did not see it enter), and the
    owning process: the one seen acting on the socket in its own context (connect, listen,
    close), never one that merely happened to be interrupted by a softirq. A line with `=`
    classifies a connection when its socket goes away.
    """
    view = View(out=sys.stdout, engine=Engine(), as_json=as_json)
    scope = Scope(ports=frozenset(request.ports), family=FAMILIES[request.family])
    reconciler = Reconciler(view.engine, scope) if reconcile_every else None

    def attached(probe: TcpProbe) -> None:
        view.engine.reset_reasons = dict(probe.features.reset_reasons)
        view.engine.sees_timewait = probe.features.available(TIMEWAIT_CAPABILITY)
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
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@reports_errors
def replay(path: Path, as_json: bool) -> None:
    """Run a recording through the lifecycle engine, as `watch` would have shown it.

    Needs neither root nor BPF.
    """
    with recording.Reader(path) as reader:
        engine = Engine(
            reset_reasons=reader.header.reset_reasons,
            sees_timewait=reader.header.capabilities.get(TIMEWAIT_CAPABILITY, True),
        )
        view = View(
            out=sys.stdout, engine=engine, as_json=as_json, offset_ns=reader.header.clock_offset_ns
        )
        view.header()
        try:
            for event in reader:
                view.on_event(event)
        except BrokenPipeError:
            silence_stdout()
    click.echo(view.summary("replay"), err=True)


RUN_CONFIG_KEYS = {
    "listen_address", "web_config_file", "port_labels", "port_label_listening", "max_sockets",
    "ground_truth", "ground_truth_interval", "tracefs_root", "log_level",
}  # fmt: skip


def load_config_file(ctx: click.Context, _param: click.Parameter, path: Path | None) -> Path | None:
    """An optional YAML file whose keys are run's option names (CLI and SYNFIN_* win)."""
    if path is None:
        return None
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise click.BadParameter(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise click.BadParameter(
            f"{path} is not valid YAML: {str(error).splitlines()[0]}"
        ) from None
    if not isinstance(raw, dict):
        raise click.BadParameter(f"{path} is not a YAML mapping of option: value")
    settings = {str(key).replace("-", "_"): value for key, value in raw.items()}
    settings = {
        ("port_labels" if key == "port_label" else key): value for key, value in settings.items()
    }
    unknown = sorted(set(settings) - RUN_CONFIG_KEYS)
    if unknown:
        raise click.BadParameter(f"{path}: unknown setting(s) {', '.join(unknown)}")
    ctx.default_map = {**(ctx.default_map or {}), **settings}
    return path


@main.command()
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    callback=load_config_file,
    is_eager=True,
    expose_value=False,
    envvar="SYNFIN_CONFIG",
    help="YAML file of settings named like these options (flags and SYNFIN_* variables win).",
)
@click.option(
    "--listen-address",
    default=DEFAULT_LISTEN,
    show_default=True,
    envvar="SYNFIN_LISTEN_ADDRESS",
    help="Serve /metrics here (HOST:PORT).",
)
@click.option(
    "--web-config-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="SYNFIN_WEB_CONFIG_FILE",
    help="TLS and basic auth, in the Prometheus exporter-toolkit format.",
)
@click.option(
    "--port-label",
    "port_labels",
    type=click.IntRange(1, 65535),
    multiple=True,
    envvar="SYNFIN_PORT_LABEL",
    help="Give this port its own `port` label on connects, accepts and closes (repeatable).",
)
@click.option(
    "--port-label-listening",
    is_flag=True,
    envvar="SYNFIN_PORT_LABEL_LISTENING",
    help="Label every port a local listener accepts on (bounded by the listeners you run).",
)
@click.option(
    "--max-sockets",
    type=click.IntRange(64, 1 << 24),
    default=65536,
    show_default=True,
    envvar="SYNFIN_MAX_SOCKETS",
    help="Sockets followed at once; beyond it the least recently used is evicted (and counted).",
)
@click.option(
    "--ground-truth",
    type=click.Choice(SCOPES),
    default="all",
    show_default=True,
    envvar="SYNFIN_GROUND_TRUTH",
    help="Export the kernel's own socket states and Tcp counters: for all network namespaces, "
    "the host's only, or not at all.",
)
@click.option(
    "--ground-truth-interval",
    type=click.FloatRange(min=1),
    default=15.0,
    show_default=True,
    envvar="SYNFIN_GROUND_TRUTH_INTERVAL",
    help="Seconds between ground-truth samples.",
)
@tracefs_option
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    envvar="SYNFIN_LOG_LEVEL",
)
@click.option(
    "--check",
    is_flag=True,
    help="Check the configuration, attach and detach the probes, then exit.",
)
@reports_errors
def run(check: bool, log_level: str, **settings: object) -> None:
    """Export TCP handshake and teardown metrics for Prometheus (the daemon).

    Runs until SIGTERM or SIGINT, then detaches everything and exits 0.
    """
    logging.basicConfig(level=log_level.upper(), format="%(message)s", stream=sys.stderr)
    config = RunConfig(**settings)  # type: ignore[arg-type]
    daemon = Daemon(config)
    if check:
        probe = daemon.attach()
        attached = sum(probe.attached().values())
        probe.close()
        click.echo(
            f"synfin run --check: configuration OK; {attached} hooks attached and detached",
            err=True,
        )
        return
    with stop_on_signals() as stopping:
        try:
            daemon.start()
            while not stopping():
                time.sleep(0.1)
        finally:
            daemon.stop()
    click.echo("synfin run: stopped, probes detached", err=True)


def lab_epilog() -> str:
    # "\b" keeps click from rewrapping the list.
    return "\b\nScenarios:\n" + "\n".join(f"  {name:<20} {lab.summary(name)}" for name in lab.NAMES)


@main.command("lab", epilog=lab_epilog(), context_settings={"max_content_width": 120})
@click.argument("scenarios", nargs=-1, type=click.Choice(lab.NAMES), metavar="SCENARIO...")
@click.option(
    "--family", type=click.Choice(sorted(lab.FAMILIES)), default="ipv4", show_default=True
)
@click.option(
    "--port",
    type=click.IntRange(1024, 64000),
    default=20000,
    show_default=True,
    help="First server port.",
)
@click.option("--loop", is_flag=True, help="Repeat the scenarios until Ctrl-C or SIGTERM.")
@click.option(
    "--per-minute",
    type=click.FloatRange(min=0.1, max=600),
    default=30,
    show_default=True,
    help="With --loop: at most this many scenario runs a minute.",
)
@reports_errors
def lab_command(
    scenarios: tuple[str, ...], family: str, port: int, loop: bool, per_minute: float
) -> None:
    """Play named TCP behaviours between two test hosts in network namespaces.

    Creates a client and a server namespace joined by a veth pair (192.0.2.0/24,
    2001:db8::/64), runs each SCENARIO there, prints what synfin should report, and removes
    the namespaces however it ends. All traffic stays inside them. Run `synfin watch` or
    `synfin trace` beside it to see it. Needs root.
    """
    if not scenarios:
        raise click.UsageError("name at least one scenario (see the list below --help)")
    if os.geteuid() != 0:
        raise SynfinError("creating network namespaces needs root", "run it with sudo")
    with lab.Lab() as bench, stop_on_signals() as stopping:
        for name, used in bench.runs(
            list(scenarios), lab.FAMILIES[family], port, loop, per_minute, stopping
        ):
            click.echo(f"synfin lab: {name} ({family}, port {used}) done; synfin should report:")
            for line in lab.expectations(name):
                click.echo(f"  {line}")
