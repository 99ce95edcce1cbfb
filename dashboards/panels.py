"""The panels of synfin's two dashboards (the state diagram is in diagram.py)."""

from __future__ import annotations

from widgets import FAM, RATE, SEL, Panel, _panel, row, stat, timeseries

PORT = f'{FAM},port=~"$port"'
GREEN, AMBER, RED = "green", "orange", "red"


def _quantiles(
    metric: str, selector: str, by: str, quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)
) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{round(q * 100)} {{{{{by}}}}}",
        )
        for q in quantiles
    ]


def overview_panels() -> list[Panel]:
    return [
        row("Opening"),
        timeseries(
            "Connects by result",
            "Outgoing connects per second: established when the handshake completes; refused "
            "(answered by RST), timeout (SYN retries exhausted), reset or other when the socket "
            "goes away without getting there.",
            [
                (
                    f"sum by (result) (rate(synfin_tcp_connects_total{{{PORT}}}[{RATE}]))",
                    "{{result}}",
                )
            ],
            "ops",
        ),
        timeseries(
            "Accepts",
            "Connections listeners accepted per second (child sockets created at the third ACK).",
            [(f"sum by (family) (rate(synfin_tcp_accepts_total{{{PORT}}}[{RATE}]))", "{{family}}")],
            "ops",
        ),
        stat(
            "Connect failure ratio",
            "Share of connects over the last 5 minutes that did not get established "
            "(recording rule instance:synfin_tcp_connect_failures:ratio_rate5m).",
            [(f"max(instance:synfin_tcp_connect_failures:ratio_rate5m{{{SEL}}})", "failures")],
            "percentunit",
            [(GREEN, None), (AMBER, 0.05), (RED, 0.1)],
        ),
        stat(
            "Handshake p99 (client)",
            "99th percentile of connect()'s SYN to ESTABLISHED over the last 5 minutes.",
            [
                (
                    "histogram_quantile(0.99, sum by (le) ("
                    f'instance_role_le:synfin_tcp_handshake_duration_seconds_bucket:rate5m{{{SEL},role="client"}}))',
                    "p99",
                )
            ],
            "s",
            [(GREEN, None), (AMBER, 0.1), (RED, 0.5)],
        ),
        _panel(
            "heatmap",
            "Handshake latency (client)",
            "connect()'s SYN to ESTABLISHED, per log2 bucket: a band far right of the rest means "
            "lost SYNs (retransmitted after a second or more).",
            [
                (
                    f'sum by (le) (rate(synfin_tcp_handshake_duration_seconds_bucket{{{SEL},role="client"}}[{RATE}]))',
                    "{{le}}",
                )
            ],
            "s",
            options={"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1},
        ),
        timeseries(
            "Handshake latency quantiles",
            "p50, p90 and p99 of the handshake: client from its SYN, server from the SYN's arrival.",
            _quantiles("synfin_tcp_handshake_duration_seconds", SEL, "role"),
            "s",
        ),
        row("Closing"),
        timeseries(
            "Closes by initiator and kind",
            "Established connections that closed, per second: who sent the first FIN (local, "
            "remote, simultaneous) and how (graceful, half_close, reset_sent, reset_received, abort, timeout).",
            [
                (
                    f"sum by (initiator, kind) (rate(synfin_tcp_closes_total{{{PORT}}}[{RATE}]))",
                    "{{initiator}} {{kind}}",
                )
            ],
            "ops",
        ),
        timeseries(
            "Time in state (p90)",
            "How long connections stay in each documented state before leaving it (90th percentile).",
            _quantiles("synfin_tcp_state_duration_seconds", SEL, "state", (0.9,)),
            "s",
        ),
        timeseries(
            "Connection duration",
            "Established connections from open to close, TIME-WAIT not included.",
            _quantiles("synfin_tcp_connection_duration_seconds", SEL, "role", (0.5, 0.99)),
            "s",
        ),
        timeseries(
            "TIME-WAIT and CLOSE-WAIT: synfin and the kernel",
            "Connections in TIME-WAIT and CLOSE-WAIT as synfin follows them and as the kernel lists "
            "them (sock_diag). synfin counts a timewait socket in FIN-WAIT-2 until it sees the "
            "peer's FIN, so the kernel's TIME-WAIT line is the exact one.",
            [
                (f'sum(synfin_tcp_connections{{{FAM},state="time_wait"}})', "TIME-WAIT (synfin)"),
                (
                    f'sum(synfin_kernel_tcp_sockets{{{FAM},state="time_wait"}})',
                    "TIME-WAIT (kernel)",
                ),
                (f'sum(synfin_tcp_connections{{{FAM},state="close_wait"}})', "CLOSE-WAIT (synfin)"),
                (
                    f'sum(synfin_kernel_tcp_sockets{{{FAM},state="close_wait"}})',
                    "CLOSE-WAIT (kernel)",
                ),
            ],
            "short",
        ),
        row("Resets and retransmits"),
        timeseries(
            "Resets sent",
            "RSTs this host sent per second, by the state they hit (none: no socket, e.g. a SYN "
            "to a closed port) and the kernel's reason.",
            [
                (
                    f"sum by (state, reason) (rate(synfin_tcp_resets_sent_total{{{SEL}}}[{RATE}]))",
                    "{{state}} {{reason}}",
                )
            ],
            "ops",
        ),
        timeseries(
            "Resets received",
            "RSTs received per second, by the state they hit.",
            [
                (
                    f"sum by (state) (rate(synfin_tcp_resets_received_total{{{SEL}}}[{RATE}]))",
                    "{{state}}",
                )
            ],
            "ops",
        ),
        timeseries(
            "SYN and SYN-ACK retransmits",
            "SYNs retransmitted by clients and SYN-ACKs by listeners, per second: lost handshake "
            "segments or unresponsive peers.",
            [
                (
                    f'sum by (kind) (rate(synfin_tcp_retransmits_total{{{SEL},kind=~"syn|synack"}}[{RATE}]))',
                    "{{kind}}",
                )
            ],
            "ops",
        ),
    ]


def health_panels() -> list[Panel]:
    return [
        row("Attached and complete"),
        stat(
            "Hooks attached",
            "1 when every tracepoint synfin should have on this kernel is attached.",
            [(f"min(synfin_probe_attached{{{SEL}}})", "attached")],
            "bool",
            [(RED, None), (GREEN, 1)],
        ),
        stat(
            "Collectors failing",
            "synfin's collectors (kernel maps, ground truth) that failed at the last scrape.",
            [(f"count(synfin_scrape_collector_success{{{SEL}}} == 0) or vector(0)", "failing")],
            "short",
            [(GREEN, None), (RED, 1)],
        ),
        stat(
            "Socket map fill",
            "Entries in synfin's per-socket map over its capacity; at 100% the least recently used "
            "socket is evicted (raise --max-sockets). The timers tier only: the lean tier keeps "
            "each entry in its socket (no capacity series), shown as 0.",
            [
                (
                    f'max(synfin_bpf_map_entries{{{SEL},map="sockets"}} / synfin_bpf_map_capacity{{{SEL},map="sockets"}}) or vector(0)',
                    "fill",
                )
            ],
            "percentunit",
            [(GREEN, None), (AMBER, 0.8), (RED, 0.95)],
        ),
        stat(
            "Sockets evicted",
            "Sockets dropped from the full map per second.",
            [(f"sum(rate(synfin_bpf_map_evictions_total{{{SEL}}}[{RATE}]))", "evictions")],
            "ops",
            [(GREEN, None), (RED, 0.001)],
        ),
        stat(
            "Probe runs skipped",
            "Runs of synfin's programs the kernel skipped per second (a BPF program was already "
            "running on that CPU): what they would have counted is missing.",
            [(f"sum(rate(synfin_probe_missed_runs_total{{{SEL}}}[{RATE}]))", "skipped")],
            "ops",
            [(GREEN, None), (AMBER, 0.001)],
        ),
        timeseries(
            "Hooks",
            "Each tracepoint synfin attaches: 1 attached, 0 not.",
            [(f"synfin_probe_attached{{{SEL}}}", "{{instance}} {{tracepoint}}")],
            "bool",
        ),
        timeseries(
            "Live-stream records",
            "Per-event records for `synfin watch`/`record`, sent and lost (ring buffer full). The "
            "exporter itself does not stream: counters do not depend on these.",
            [
                (
                    f"sum by (outcome) (rate(synfin_stream_records_total{{{SEL}}}[{RATE}]))",
                    "{{outcome}}",
                )
            ],
            "ops",
        ),
        timeseries(
            "Scrape and sample durations",
            "How long each collector took at the last scrape, and the last ground-truth sample.",
            [
                (
                    f"synfin_scrape_collector_duration_seconds{{{SEL}}}",
                    "{{instance}} {{collector}}",
                ),
                (
                    f"synfin_kernel_sample_duration_seconds{{{SEL}}}",
                    "{{instance}} ground-truth sample",
                ),
            ],
            "s",
        ),
        row("Agreement with the kernel"),
        timeseries(
            "Connects and accepts: synfin and the kernel",
            "synfin's connects and accepts beside the kernel's own Tcp ActiveOpens and PassiveOpens "
            "(summed over namespaces): the lines should lie on each other.",
            [
                (f"sum(rate(synfin_tcp_connects_total{{{SEL}}}[{RATE}]))", "connects (synfin)"),
                (
                    f"sum(rate(synfin_kernel_tcp_active_opens_total{{{SEL}}}[{RATE}]))",
                    "ActiveOpens (kernel)",
                ),
                (f"sum(rate(synfin_tcp_accepts_total{{{SEL}}}[{RATE}]))", "accepts (synfin)"),
                (
                    f"sum(rate(synfin_kernel_tcp_passive_opens_total{{{SEL}}}[{RATE}]))",
                    "PassiveOpens (kernel)",
                ),
            ],
            "ops",
        ),
        timeseries(
            "Sockets per state: synfin and the kernel",
            "Connections per documented state as synfin follows them and as sock_diag lists them.",
            [
                (f"sum by (state) (synfin_tcp_connections{{{SEL}}})", "{{state}} (synfin)"),
                (f"sum by (state) (synfin_kernel_tcp_sockets{{{SEL}}})", "{{state}} (kernel)"),
            ],
            "short",
        ),
        timeseries(
            "Timewait sockets synfin did not see begin",
            "Timewait sockets that ended without synfin seeing their start (they began before it).",
            [(f"sum(rate(synfin_timewait_untracked_total{{{SEL}}}[{RATE}]))", "untracked")],
            "ops",
        ),
    ]
