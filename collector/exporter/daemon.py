"""``synfin run``: the exporter daemon.

Attach the probe (counters only, no per-event stream), serve its counters as Prometheus
metrics, drop the capabilities serving does not need, and on SIGTERM/SIGINT detach and exit.
Every metric is read from kernel maps at scrape time, so nothing depends on Python keeping up
with the connection rate.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric

from synfin.engine.classify import facts_the_rules_read
from synfin.exporter import web
from synfin.exporter.groundtruth import GroundTruthCollector, Sampler
from synfin.exporter.kernel_metrics import KernelCollector, Labelling
from synfin.exporter.timewait_census import TimewaitCensus
from synfin.kernel import capabilities, counters, privileges
from synfin.kernel.loader import import_bcc
from synfin.kernel.state_probe import AUTO, LEAN, ProbeOptions, TcpProbe
from synfin.records.counters import Counters

log = logging.getLogger("synfin")

DEFAULT_LISTEN = "0.0.0.0:9977"


@dataclass(frozen=True)
class RunConfig:
    listen_address: str = DEFAULT_LISTEN
    web_config_file: Path | None = None
    port_labels: tuple[int, ...] = ()
    port_label_listening: bool = False
    max_sockets: int = 65536
    ground_truth: str = "all"
    ground_truth_interval: float = 15.0
    tracefs_root: Path | None = None
    drop_privileges: bool = True
    probe_tier: str = AUTO

    @property
    def labelling(self) -> Labelling:
        return Labelling(ports=bool(self.port_labels or self.port_label_listening))


class Collector(Protocol):
    def collect(self) -> Iterator[Metric]: ...


class SynfinCollector:
    """Runs each part's collection, timing it; a failing part costs only its own metrics."""

    def __init__(self, parts: dict[str, Collector], probe: TcpProbe) -> None:
        self.parts = parts
        self.probe = probe
        bcc = import_bcc()
        self.build = [version("synfin"), platform.release(), getattr(bcc, "__version__", "unknown")]

    def collect(self) -> Iterator[Metric]:
        duration = GaugeMetricFamily(
            "synfin_scrape_collector_duration_seconds",
            "How long each collector took.",
            labels=["collector"],
        )
        success = GaugeMetricFamily(
            "synfin_scrape_collector_success", "1 if the collector worked.", labels=["collector"]
        )
        for name, part in self.parts.items():
            started = time.monotonic()
            try:
                metrics = list(part.collect())
                ok = 1
            except Exception:  # one broken collector must not take the scrape down
                log.exception("collector %s failed", name)
                metrics, ok = [], 0
            yield from metrics
            duration.add_metric([name], time.monotonic() - started)
            success.add_metric([name], ok)
        yield from (duration, success)
        attached = GaugeMetricFamily(
            "synfin_probe_attached", "1 while the hook is attached.", labels=["tracepoint"]
        )
        for hook, is_attached in self.probe.attached().items():
            attached.add_metric([hook], int(is_attached))
        yield attached
        tier = GaugeMetricFamily(
            "synfin_probe_tier",
            "1 for the probe tier running: lean (tp_btf, per-socket storage) or timers.",
            labels=["tier"],
        )
        tier.add_metric([self.probe.tier], 1)
        yield tier
        build = GaugeMetricFamily(
            "synfin_build_info",
            "synfin's version, the kernel and bcc.",
            labels=["version", "kernel", "bcc"],
        )
        build.add_metric(self.build, 1)
        yield build


class Daemon:
    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.web_config = (
            web.load_web_config(config.web_config_file)
            if config.web_config_file
            else web.WebConfig()
        )
        web.parse_listen_address(config.listen_address)
        self.probe: TcpProbe | None = None
        self.sampler = Sampler(config.ground_truth, config.ground_truth_interval)
        self.server: web.WSGIServer | None = None
        self.http: threading.Thread | None = None

    def attach(self) -> TcpProbe:
        options = ProbeOptions(
            max_sockets=self.config.max_sockets,
            tracefs_root=self.config.tracefs_root,
            stream_events=False,
            ending_facts_mask=int(facts_the_rules_read()),
            tier=self.config.probe_tier,
        )
        self.probe = TcpProbe(options)
        self.probe.set_labels(self.config.port_labels, self.config.port_label_listening)
        return self.probe

    def start(self) -> None:
        probe = self.attach()
        registry = CollectorRegistry(auto_describe=False)
        read: Callable[[], Counters] = lambda: counters.read(probe)  # noqa: E731
        if probe.tier == LEAN:
            # Kills of timewait sockets, inferred from each census (exporter/timewait_census.py).
            self.sampler.snapshot = lambda: counters.read_timewait(probe)
            census = TimewaitCensus(self.sampler)
            read = lambda: census.apply(counters.read(probe))  # noqa: E731
        parts: dict[str, Collector] = {
            "kernel": KernelCollector(read, self.config.labelling),
            "groundtruth": GroundTruthCollector(self.sampler),
        }
        registry.register(SynfinCollector(parts, probe))
        # Bound (a low port may need CAP_NET_BIND_SERVICE) but not yet served: capabilities are
        # per thread, so every thread starts after the drop and has no more than the main one.
        self.server, self.http = web.serve(
            make_wsgi_app(registry), self.config.listen_address, self.web_config, start=False
        )
        bounding_cut = True
        if self.config.drop_privileges:
            bounding_cut = privileges.keep_only(privileges.needed(self.config.ground_truth))
        self.http.start()
        self.sampler.start()
        scheme = "https" if self.web_config.tls else "http"
        log.info(
            "synfin run: serving %s://%s/metrics (basic auth %s); %s tier, %d hooks attached; "
            "capabilities: %s",
            scheme,
            self.config.listen_address,
            "on" if self.web_config.users else "off",
            probe.tier,
            sum(probe.attached().values()),
            privileges.describe(privileges.effective()),
        )
        if not bounding_cut:
            log.warning("synfin run: %s", capabilities.without("CAP_SETPCAP"))
        if probe.lean_unavailable:
            log.info("synfin run: not the lean tier: %s", probe.lean_unavailable)
        for lost in probe.features.capabilities:
            if not lost.available:
                log.warning(
                    "synfin run: without %s: %s (%s)", lost.name, lost.fallback, lost.reason
                )
        if probe.tier == LEAN and self.sampler.scope != "all":
            log.info(
                "synfin run: the lean tier learns timewait kills and sockets from the census of "
                "every namespace (--ground-truth=all): without it, synfin_tcp_connections has "
                "no time_wait series and time_wait -> closed counts expiries only"
            )

    def stop(self) -> None:
        self.sampler.stop()
        if self.server is not None:
            if self.http is not None and self.http.is_alive():
                self.server.shutdown()  # waits for serve_forever: only if it ever ran
            self.server.server_close()
        if self.probe is not None:
            self.probe.close()
