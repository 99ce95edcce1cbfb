"""``synfin web``: the state probe and the segment capture feed one engine; the hub keeps what
the page shows, and synfin.exporter.web serves it (the same web configuration as /metrics).

The page shows addresses and process names, so it listens on 127.0.0.1 unless told otherwise,
and says so when told to listen further without basic auth or TLS.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import click

from synfin.cli.support import (
    FAMILIES,
    family_option,
    port_option,
    power_of_two,
    reports_errors,
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
@click.option(
    "--ring-buffer-pages",
    type=click.IntRange(1, 1 << 18),
    callback=power_of_two,
    default=ProbeOptions.ringbuf_pages,
    show_default=True,
    help="Ring buffer size in pages (a power of two); raise it if the page says records are lost.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop after this many seconds (default: until Ctrl-C).",
)
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
    config = web.load_web_config(web_config_file) if web_config_file else web.WebConfig()
    _host, own_port = web.parse_listen_address(listen_address)
    capture_netns = _netns_path(netns)
    deadline = time.monotonic() + duration if duration else None
    hub = Hub(recent_max=recent, pages_max=max_pages, own_port=own_port)
    view = WebView(hub)
    with (
        TcpProbe(ProbeOptions(ringbuf_pages=ring_buffer_pages, tracefs_root=tracefs_root)) as probe,
        SegmentCapture(CaptureOptions(netns=capture_netns)) as capture,
        stop_on_signals() as stopping,
    ):
        tracer = Tracer(
            draw=hub.on_ladder,
            engine=Engine(probe.description()),
            wait_for_time_wait=False,  # a ladder at the last ACK, not a minute later
            on_output=hub.on_output,
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

        def count_losses() -> None:
            hub.losses.lost = probe.records_lost()
            hub.losses.segments_lost = capture.records_lost()
            hub.losses.undecodable = pump.undecodable
            hub.losses.unfollowed = probe.tracking_stats().evicted

        server, _thread = web.serve(view, listen_address, config, router=router(view))
        scheme = "https" if config.tls else "http"
        click.echo(
            f"synfin web: serving {scheme}://{listen_address}/ (basic auth "
            f"{'on' if config.users else 'off'}; Ctrl-C to end)",
            err=True,
        )
        if beyond_loopback(listen_address) and not (config.users and config.tls):
            click.echo(
                f"synfin web: {listen_address} is reachable beyond this host, without basic auth "
                "and TLS: whoever reaches it sees this host's connections, addresses and process "
                "names (give --web-config-file)",
                err=True,
            )

        def keep_going() -> bool:
            return not stopping() and (deadline is None or time.monotonic() < deadline)

        try:
            pump.run(
                keep_going,
                [
                    Periodic(FLUSH_EVERY_S, lambda: tracer.flush(time.monotonic_ns())),
                    Periodic(LOSSES_EVERY_S, count_losses),
                ],
            )
        finally:
            view.stopping.set()
            server.shutdown()
            server.server_close()
    click.echo(
        f"synfin web: stopped, probes detached; {tracer.counters.events} state events, "
        f"{tracer.counters.segments} segments, {tracer.counters.drawn} ladders drawn",
        err=True,
    )
