"""``synfin web``: the state probe and the segment capture feed one engine; the hub keeps what
the page shows, and synfin.exporter.web serves it (the same web configuration as /metrics).

The page shows addresses and process names, so it listens on 127.0.0.1 unless told otherwise,
and says so when told to listen further without basic auth or TLS.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import click

from synfin.cli.support import (
    FAMILIES,
    duration_option,
    family_option,
    port_option,
    reports_errors,
    ring_buffer_pages_option,
    stop_on_signals,
    tracefs_option,
)
from synfin.cli.trace import _netns_path
from synfin.engine.lifecycle import Engine
from synfin.exporter import web
from synfin.kernel.segment_probe import CaptureOptions, SegmentCapture
from synfin.kernel.state_probe import ProbeOptions, TcpProbe
from synfin.ladder.tracer import Tracer
from synfin.records.events import EVENT_FORMAT
from synfin.records.pump import Periodic, Pump, Stream
from synfin.records.segments import SEGMENT_FORMAT
from synfin.web.app import WebView, router
from synfin.web.hub import Hub

DEFAULT_LISTEN = "127.0.0.1:9978"
POLL_MS = 20
FLUSH_EVERY_S = 0.1  # ladders of connections that are over
LOSSES_EVERY_S = 1.0


def beyond_loopback(listen: str) -> bool:
    host, _port = web.parse_listen_address(listen)
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"  # a name: it may resolve anywhere


@dataclass(frozen=True)
class WebOptions:
    listen_address: str = DEFAULT_LISTEN
    web_config_file: Path | None = None
    ports: tuple[int, ...] = ()
    family: str = "any"
    capture_netns: Path | None = None  # where the ladders' segments are captured
    recent: int = 200
    max_pages: int = 16
    ring_buffer_pages: int = ProbeOptions.ringbuf_pages
    tracefs_root: Path | None = None


class WebSession:
    """Both probes attached, the hub fed through one engine, the page served. ``pump`` moves
    records until ``keep_going`` says stop (from any one thread: `synfin lab --web` pumps
    beside its scenarios); leaving the block stops serving and detaches everything."""

    def __init__(self, options: WebOptions) -> None:
        self.options = options
        self.config = (
            web.load_web_config(options.web_config_file)
            if options.web_config_file
            else web.WebConfig()
        )
        _host, own_port = web.parse_listen_address(options.listen_address)
        self.hub = Hub(recent_max=options.recent, pages_max=options.max_pages, own_port=own_port)
        self.view = WebView(self.hub)
        self._exits = ExitStack()

    def __enter__(self) -> WebSession:
        options = self.options
        with ExitStack() as opening:
            probe_options = ProbeOptions(
                ringbuf_pages=options.ring_buffer_pages, tracefs_root=options.tracefs_root
            )
            self.probe = opening.enter_context(TcpProbe(probe_options))
            capture_options = CaptureOptions(netns=options.capture_netns)
            self.capture = opening.enter_context(SegmentCapture(capture_options))
            self.tracer = Tracer(
                draw=self.hub.on_ladder,
                engine=Engine(self.probe.description()),
                wait_for_time_wait=False,  # a ladder at the last ACK, not a minute later
                on_output=self.hub.on_output,
            )
            for source in (self.probe, self.capture):
                source.set_filter(options.ports, FAMILIES[options.family])
            self._pump = Pump(
                [
                    Stream(self.probe, EVENT_FORMAT, self.tracer.on_event),
                    Stream(self.capture, SEGMENT_FORMAT, self.tracer.on_segment),
                ],
                poll_ms=POLL_MS,
            )
            self.server, _thread = web.serve(
                self.view, options.listen_address, self.config, router=router(self.view)
            )
            self._exits = opening.pop_all()
        self._announce()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.view.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self._exits.close()

    def _announce(self) -> None:
        listen = self.options.listen_address
        scheme = "https" if self.config.tls else "http"
        auth = "on" if self.config.users else "off"
        click.echo(f"synfin web: serving {scheme}://{listen}/ (basic auth {auth})", err=True)
        if beyond_loopback(listen) and not (self.config.users and self.config.tls):
            click.echo(
                f"synfin web: {listen} is reachable beyond this host, without basic auth and "
                "TLS: whoever reaches it sees this host's connections, addresses and process "
                "names (give --web-config-file)",
                err=True,
            )

    def _count_losses(self) -> None:
        losses = self.hub.losses
        losses.lost = self.probe.records_lost()
        losses.segments_lost = self.capture.records_lost()
        losses.undecodable = self._pump.undecodable
        losses.unfollowed = self.probe.tracking_stats().evicted
        losses.skipped = sum(self.probe.missed_runs().values())

    def pump(self, keep_going: Callable[[], bool]) -> None:
        self._pump.run(
            keep_going,
            [
                Periodic(FLUSH_EVERY_S, lambda: self.tracer.flush(time.monotonic_ns())),
                Periodic(LOSSES_EVERY_S, self._count_losses),
            ],
        )

    def summary(self) -> str:
        counters = self.tracer.counters
        return (
            f"synfin web: stopped, probes detached; {counters.events} state events, "
            f"{counters.segments} segments, {counters.drawn} ladders drawn"
        )


@click.command("web")
@click.option(
    "--listen-address",
    default=DEFAULT_LISTEN,
    show_default=True,
    help="Serve the page here (HOST:PORT). It shows addresses and process names: keep it on "
    "localhost, or give --web-config-file with basic auth and TLS.",
)
@click.option(
    "--web-config-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TLS and basic auth, in the Prometheus exporter-toolkit format (as `synfin run`).",
)
@port_option
@family_option
@click.option(
    "--netns",
    help="Capture segments for the ladders in this network namespace (a name from `ip netns "
    "list`, or a path); by default this one.",
)
@click.option(
    "--recent",
    type=click.IntRange(10, 10000),
    default=200,
    show_default=True,
    help="Connections the page lists (and the server keeps); the newest 50 ladders are kept.",
)
@click.option(
    "--max-pages",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Pages (browser tabs) served at once; one more is told to close one.",
)
@ring_buffer_pages_option
@duration_option
@tracefs_option
@reports_errors
def web_command(
    listen_address: str,
    web_config_file: Path | None,
    ports: tuple[int, ...],
    family: str,
    netns: str | None,
    recent: int,
    max_pages: int,
    ring_buffer_pages: int,
    duration: float | None,
    tracefs_root: Path | None,
) -> None:
    """Serve a live page: the textbook state diagram lighting up as connections move through
    it, the recent connections with how each opened and closed, and each one's ladder.

    Arrows drawn solid were seen in the kernel; dashed ones were inferred from other evidence.
    """
    options = WebOptions(
        listen_address, web_config_file, ports, family, _netns_path(netns), recent, max_pages,
        ring_buffer_pages, tracefs_root,
    )  # fmt: skip
    deadline = time.monotonic() + duration if duration else None
    with stop_on_signals() as stopping, WebSession(options) as session:
        click.echo("synfin web: Ctrl-C to end", err=True)
        session.pump(lambda: not stopping() and (deadline is None or time.monotonic() < deadline))
    click.echo(session.summary(), err=True)
