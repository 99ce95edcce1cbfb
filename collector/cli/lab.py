"""``synfin lab``: named TCP behaviours between two namespaced test hosts."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import click

from synfin.cli.support import reports_errors, stop_on_signals
from synfin.cli.web import DEFAULT_LISTEN, WebOptions, WebSession
from synfin.errors import SynfinError
from synfin.kernel.namespaces import NETNS_DIR
from synfin.lab import runner as lab
from synfin.lab.tracing import LabTracer
from synfin.ladder.layout import Ladder
from synfin.views import ladder_text


def lab_epilog() -> str:
    # "\b" keeps click from rewrapping the list.
    return "\b\nScenarios:\n" + "\n".join(f"  {name:<20} {lab.summary(name)}" for name in lab.NAMES)


@click.command("lab", epilog=lab_epilog(), context_settings={"max_content_width": 120})
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
    "--trace",
    "draw",
    is_flag=True,
    help="Draw each scenario's connections as the textbook ladder (as `synfin trace` does), "
    "with the documented rules checked.",
)
@click.option(
    "--web",
    "web_address",
    is_flag=False,
    flag_value=DEFAULT_LISTEN,
    metavar="[HOST:PORT]",
    help=f"Show the scenarios live in a browser, as `synfin web` does (default {DEFAULT_LISTEN}); "
    "the page stays up after the scenarios until Ctrl-C.",
)
@click.option(
    "--per-minute",
    type=click.FloatRange(min=0.1, max=600),
    default=30,
    show_default=True,
    help="With --loop: at most this many scenario runs a minute.",
)
@reports_errors
def lab_command(
    scenarios: tuple[str, ...],
    family: str,
    port: int,
    loop: bool,
    draw: bool,
    web_address: str | None,
    per_minute: float,
) -> None:
    """Play named TCP behaviours between two test hosts in network namespaces.

    Creates a client and a server namespace joined by a veth pair (192.0.2.0/24,
    2001:db8::/64), runs each SCENARIO there, prints what synfin should report, and removes
    the namespaces however it ends. All traffic stays inside them. Run `synfin watch` or
    `synfin trace` beside it to see it. Needs root.
    """
    if not scenarios:
        raise click.UsageError("name at least one scenario (see the list below --help)")
    storms = sorted(set(scenarios) & set(lab.STORMS))
    if draw and storms:
        raise click.UsageError(
            "--trace draws connections one by one: not for the load scenarios "
            f"({', '.join(storms)})"
        )
    if os.geteuid() != 0:
        raise SynfinError("creating network namespaces needs root", "run it with sudo")
    with lab.Lab() as bench, stop_on_signals() as stopping, ExitStack() as tracing:
        tracer = None
        ports = range(port, min(port + lab.PORTS_PER_LAB, 65536))
        if draw:
            tracer = tracing.enter_context(LabTracer(bench.hosts, ports, _echo_ladder))
        if web_address:
            options = WebOptions(
                listen_address=web_address, ports=tuple(ports),
                capture_netns=NETNS_DIR / bench.hosts.client.namespace,
            )  # fmt: skip
            tracing.enter_context(_web_beside(WebSession(options)))
        for name, used in bench.runs(
            list(scenarios), lab.FAMILIES[family], port, loop, per_minute, stopping
        ):
            click.echo(f"synfin lab: {name} ({family}, port {used}) done; synfin should report:")
            for line in lab.expectations(name):
                click.echo(f"  {line}")
            if tracer is not None:
                tracer.draw_pending()
        if tracer is not None and tracer.lost:
            click.echo(f"synfin lab: {tracer.lost} trace records lost", err=True)
        if web_address and not stopping():
            click.echo(f"synfin lab: done; the page stays at http://{web_address}/ until Ctrl-C")
            while not stopping():
                time.sleep(0.2)


@contextmanager
def _web_beside(session: WebSession) -> Iterator[WebSession]:
    """The web view pumping on its own thread while the scenarios play on this one."""
    done = threading.Event()
    with session:
        pumping = threading.Thread(
            target=session.pump, args=(lambda: not done.is_set(),), name="synfin-web-pump"
        )
        pumping.start()
        try:
            yield session
        finally:
            done.set()
            pumping.join()
    click.echo(session.summary(), err=True)


def _echo_ladder(ladder: Ladder) -> None:
    click.echo(ladder_text.render(ladder, colour=True))
