"""`synfin run` scraped by a real Prometheus while scenarios run between two namespaces.

PromQL over Prometheus' HTTP API must give the scenario's numbers, and they must equal the
kernel's own /proc/net/snmp deltas in each namespace.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from synfin.kernel.features import detect
from synfin.lab.hosts import HostPair
from synfin.lab.scenarios import SCENARIOS, snmp_counters

from .servers import prometheus, synfin_run

pytestmark = [pytest.mark.bpf, pytest.mark.netns]


_ports = iter(range(34000, 34100, 3))  # each run (tier, rerun) its own: timewait sockets linger


@pytest.mark.parametrize("tier", ["lean", "timers"])
def test_prometheus_sees_exactly_what_happened(hosts: HostPair, tmp_path: Path, tier: str) -> None:
    graceful = next(_ports)
    refused, abort = graceful + 1, graceful + 2
    labels = [f"--port-label={port}" for port in (graceful, refused, abort)]
    with (
        synfin_run(*labels, "--ground-truth-interval=1", f"--probe-tier={tier}") as (_daemon, port),
        prometheus(tmp_path, f"127.0.0.1:{port}") as prom,
    ):
        before = {
            role: snmp_counters(ns)
            for role, ns in (("client", hosts.client.namespace), ("server", hosts.server.namespace))
        }
        # The windows below begin at a scrape that began after every connection the test
        # itself opened (its Prometheus client keeps one alive): a connection opened while a
        # scrape reads the maps can be in one counter and not yet in the next.
        started = prom.scraped_after(time.time())
        for _ in range(3):
            SCENARIOS["client-closes"].run(hosts, socket.AF_INET, graceful)
        for _ in range(2):
            SCENARIOS["refused"].run(hosts, socket.AF_INET6, refused)
        SCENARIOS["reset-abort"].run(hosts, socket.AF_INET, abort)
        after = {
            role: snmp_counters(ns)
            for role, ns in (("client", hosts.client.namespace), ("server", hosts.server.namespace))
        }

        assert (
            prom.wait_for(f'sum(synfin_tcp_connects_total{{port="{refused}",result="refused"}})', 2)
            == 2
        )
        assert prom.wait_for(f'sum(synfin_tcp_closes_total{{port="{abort}"}})', 2) == 2
        # Every counter read from a scrape after the scenarios: a fixed wait for "one more
        # scrape" was too short on a loaded machine or under emulation.
        ended = prom.scraped_after(time.time())

        q = prom.query
        closes = "synfin_tcp_closes_total"
        expected = {
            f'synfin_tcp_connects_total{{port="{refused}",result="refused",family="ipv6"}}': 2,
            f'synfin_tcp_connects_total{{port="{graceful}",result="established",family="ipv4"}}': 3,
            f'synfin_tcp_accepts_total{{port="{graceful}"}}': 3,
            f'{closes}{{port="{graceful}",initiator="local",kind="graceful"}}': 3,
            f'{closes}{{port="{graceful}",initiator="remote",kind="graceful"}}': 3,
            f'{closes}{{port="{abort}",initiator="local",kind="abort"}}': 1,
            f'{closes}{{port="{abort}",initiator="remote",kind="reset_received"}}': 1,
        }
        assert {expr: q(expr) for expr in expected} == expected

        # Exact against the kernel's own counters in each namespace.
        ours = f'port=~"{graceful}|{refused}|{abort}"'
        delta = {role: {k: after[role][k] - before[role][k] for k in after[role]} for role in after}
        assert q(f"sum(synfin_tcp_connects_total{{{ours}}})") == delta["client"]["ActiveOpens"] == 6
        assert q(f"sum(synfin_tcp_accepts_total{{{ours}}})") == delta["server"]["PassiveOpens"] == 4
        resets = f'sum(synfin_tcp_closes_total{{{ours},kind=~"abort|reset_received|reset_sent"}})'
        assert q(resets) == delta["client"]["EstabResets"] + delta["server"]["EstabResets"] == 2

        # Histograms count the same connections as the counters, over the same window.
        def grew(expr: str) -> float:
            return (q(expr, ended) or 0) - (q(expr, started) or 0)

        established = 'sum(synfin_tcp_connects_total{result="established"})'
        assert (
            grew('synfin_tcp_handshake_duration_seconds_count{role="client"}')
            == grew(established)
            >= 4
        )
        assert grew('synfin_tcp_handshake_duration_seconds_count{role="server"}') == grew(
            "sum(synfin_tcp_accepts_total)"
        )
        # The two refused SYNs' RSTs have no socket: traced from Linux 6.10 (docs/kernels.md).
        socketless = 2 if detect().available("socketless resets") else 0
        assert grew('sum(synfin_tcp_resets_sent_total{state="none",reason="no_socket"})') == (
            socketless
        )

        # The kernel's view is exported beside synfin's, and synfin is healthy.
        assert grew("synfin_kernel_tcp_active_opens_total") >= 6
        assert q('synfin_scrape_collector_success{collector="kernel"}') == 1
        assert q('synfin_scrape_collector_success{collector="groundtruth"}') == 1
        assert q("min(synfin_probe_attached)") == 1
        assert q(f'synfin_probe_tier{{tier="{tier}"}}') == 1
        assert q("synfin_bpf_map_evictions_total") == 0


def test_a_live_scrape_passes_promtool() -> None:
    with synfin_run("--ground-truth=host") as (_daemon, port):
        scrape = subprocess.run(
            ["curl", "-sf", f"http://127.0.0.1:{port}/metrics"], capture_output=True, check=True
        ).stdout
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=scrape, capture_output=True, check=False
    )
    assert lint.returncode == 0 and lint.stdout == lint.stderr == b"", lint
