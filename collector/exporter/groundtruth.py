"""The kernel's own view beside synfin's: sockets per state (sock_diag) and the Tcp MIB
counters (/proc/net/snmp), summed over network namespaces, sampled in the background.

A sock_diag dump of a busy host takes far longer than a scrape may, so a thread refreshes a
cached sample every ``interval`` seconds and scrapes read the cache. synfin's own counters
cover every namespace; "all" does too (it needs CAP_SYS_ADMIN to enter them), "host" only
the namespace synfin runs in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from synfin.engine.states import State, documented
from synfin.kernel.namespaces import entered_path
from synfin.kernel.procfs import ProcfsError, ProcNet
from synfin.kernel.sock_diag import count, namespaces
from synfin.records.addresses import AF_INET, AF_INET6, family_name

log = logging.getLogger(__name__)

# /proc/net/snmp Tcp fields exported, and their metric names.
SNMP_COUNTERS = {
    "ActiveOpens": "active_opens",
    "PassiveOpens": "passive_opens",
    "AttemptFails": "attempt_fails",
    "EstabResets": "estab_resets",
    "OutRsts": "out_rsts",
    "RetransSegs": "retrans_segs",
}
SCOPES = ("all", "host", "off")


@dataclass
class Sample:
    sockets: Tally[tuple[State, int]] = field(default_factory=Tally)  # (state, family)
    # Timewait sockets alone, by kernel substate (FIN_WAIT2 or TIME_WAIT) and family.
    timewait: Tally[tuple[int, int]] = field(default_factory=Tally)
    # What the sampler's ``snapshot`` returned just before the census (synfin's own counters).
    snapshot: Any = None
    snmp: dict[str, int] = field(default_factory=dict)
    namespaces: int = 0
    duration: float = 0.0
    ok: bool = False
    error: str = ""


class Sampler:
    """Refreshes a ``Sample`` every ``interval`` seconds on a daemon thread.

    ``snapshot``, if given, is called right before each census and its result kept with it, so
    synfin's counters can be set against the census of the same moment.
    """

    def __init__(
        self,
        scope: str = "all",
        interval: float = 15.0,
        snapshot: Callable[[], Any] | None = None,
    ) -> None:
        self.scope = scope
        self.interval = interval
        self.snapshot = snapshot
        self.latest = Sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="synfin-groundtruth", daemon=True)

    def start(self) -> None:
        if self.scope != "off":
            self.refresh()
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def _namespaces(self) -> dict[int, Path]:
        if self.scope == "host":
            own = Path("/proc/thread-self/ns/net")
            return {own.stat().st_ino: own}
        return namespaces()

    def refresh(self) -> None:
        started = time.monotonic()
        sample = Sample()
        try:
            if self.snapshot is not None:
                sample.snapshot = self.snapshot()
            totals: Tally[str] = Tally()
            for path in self._namespaces().values():
                try:
                    with entered_path(path):
                        counts, tcp = count(), ProcNet().tcp()
                except FileNotFoundError:
                    continue  # gone between listing and asking: the others still count
                for (state, family, timewait), n in counts.items():
                    sample.sockets[(documented(state), family)] += n
                    if timewait:
                        sample.timewait[(state, family)] += n
                totals.update(tcp)
                sample.namespaces += 1
            sample.snmp = dict(totals)
            sample.ok = True
        except (OSError, ValueError, ProcfsError) as error:
            sample.error = str(error)
            log.warning("ground truth sample failed: %s", error)
        sample.duration = time.monotonic() - started
        self.latest = sample


class GroundTruthCollector:
    """Metrics from the latest ground-truth sample."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def collect(self) -> Iterator[Metric]:
        if self.sampler.scope == "off":
            return
        sample = self.sampler.latest
        sockets = GaugeMetricFamily(
            "synfin_kernel_tcp_sockets",
            "TCP sockets per documented state as the kernel lists them (sock_diag).",
            labels=["state", "family"],
        )
        # Every documented state, 0 included, as synfin_tcp_connections does.
        for state in State:
            if state is State.UNKNOWN and not any(s is state for s, _ in sample.sockets):
                continue
            for family in (AF_INET, AF_INET6):
                sockets.add_metric(
                    [state.label, family_name(family)], sample.sockets.get((state, family), 0)
                )
        yield sockets
        for field_name, metric in SNMP_COUNTERS.items():
            if field_name in sample.snmp:
                yield CounterMetricFamily(
                    f"synfin_kernel_tcp_{metric}",
                    f"The kernel's own Tcp {field_name} counter (/proc/net/snmp), "
                    "summed over namespaces.",
                    value=sample.snmp[field_name],
                )
        if "CurrEstab" in sample.snmp:
            yield GaugeMetricFamily(
                "synfin_kernel_tcp_curr_estab",
                "The kernel's Tcp CurrEstab.",
                value=sample.snmp["CurrEstab"],
            )
        yield GaugeMetricFamily(
            "synfin_kernel_namespaces",
            "Network namespaces the ground truth covers.",
            value=sample.namespaces,
        )
        yield GaugeMetricFamily(
            "synfin_kernel_sample_duration_seconds",
            "How long the last ground-truth sample took.",
            value=sample.duration,
        )
        yield GaugeMetricFamily(
            "synfin_kernel_sample_success",
            "1 if the last ground-truth sample worked.",
            value=int(sample.ok),
        )
