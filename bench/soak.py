"""Soak: `synfin run` for a long stretch while the lab plays at a high rate.

    sudo .venv/bin/python bench/soak.py [--minutes 10] [--probe-tier auto] [--ground-truth off]

Every 10 s it samples synfin's RSS, the entries of its socket map and its connect counter; at
the end it compares synfin's connects with the kernel's ActiveOpens summed over the host's
and the lab's namespaces (read after the same scrape), and the tracked sockets with the
sockets the kernel lists. With `--ground-truth all`, each sample also holds synfin's TIME-WAIT
gauge beside the census it comes from and the timewait kills inferred (the lean tier). Writes
bench/results/soak.json (or --out) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from observer import memory_mb  # noqa: E402

from synfin.kernel.namespaces import entered  # noqa: E402
from synfin.kernel.procfs import PROC, ProcNet  # noqa: E402
from synfin.kernel.sock_diag import namespaces, take  # noqa: E402
from synfin.lab.runner import Lab  # noqa: E402
from synfin.lab.scenarios import SCENARIOS  # noqa: E402
from synfin.lab.storms import STORMS  # noqa: E402

PORT = 19979


def metric_total(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.split("{", 1)[0].split(" ", 1)[0] == name
    )


def gauge(text: str, name: str, labels: str) -> float | None:
    """The sum of ``name``'s series whose labels include ``labels``; None if there is none."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(part in line for part in labels.split(","))
    ]
    return sum(values) if values else None


def scrape() -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=30) as reply:
        return reply.read().decode()


def active_opens(lab: Lab) -> int:
    total = ProcNet(PROC).tcp()["ActiveOpens"]
    for host in (lab.hosts.client, lab.hosts.server):
        with entered(host.namespace):
            total += ProcNet().tcp()["ActiveOpens"]
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--probe-tier", default="auto", choices=("auto", "lean", "timers"))
    parser.add_argument("--ground-truth", default="off", choices=("all", "host", "off"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()
    command = [
        str(ROOT / ".venv/bin/synfin"), "run", f"--listen-address=127.0.0.1:{PORT}",
        f"--probe-tier={args.probe_tier}", f"--ground-truth={args.ground_truth}",
    ]  # fmt: skip
    synfin = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert synfin.stderr is not None
    started_line = synfin.stderr.readline()
    assert "serving" in started_line, started_line
    tier = "lean" if "lean tier" in started_line else "timers"
    samples = []
    connections = 0
    with Lab(prefix=f"soak{os.getpid()}") as lab:
        first_text = scrape()
        first_kernel = active_opens(lab)
        started = time.monotonic()
        next_sample = started
        run = 0
        while time.monotonic() - started < args.minutes * 60:
            port = 40000 + run % 5000
            run += 1
            STORMS["time-wait-storm"].run(lab.hosts, socket.AF_INET, port, 100)
            SCENARIOS["refused"].run(lab.hosts, socket.AF_INET6, port + 1)
            SCENARIOS["reset-abort"].run(lab.hosts, socket.AF_INET, port + 2)
            connections += 102
            if time.monotonic() >= next_sample:
                text = scrape()
                samples.append({
                    "t": round(time.monotonic() - started, 1),
                    "rss_mb": round(memory_mb(synfin.pid), 1),
                    "tracked": metric_total(text, "synfin_bpf_map_entries"),
                    "connects": metric_total(text, "synfin_tcp_connects_total"),
                    "evictions": metric_total(text, "synfin_bpf_map_evictions_total"),
                    "time_wait": gauge(text, "synfin_tcp_connections", 'state="time_wait"'),
                    "kernel_time_wait": gauge(
                        text, "synfin_kernel_tcp_sockets", 'state="time_wait"'
                    ),
                    "timewait_kills": gauge(
                        text,
                        "synfin_tcp_state_transitions_total",
                        'from="time_wait",to="closed"',
                    ),
                })  # fmt: skip
                print(json.dumps(samples[-1]), flush=True)
                next_sample += 10
        time.sleep(1)
        last_text = scrape()
        last_kernel = active_opens(lab)
        kernel_sockets = len(take(namespaces()))
    synfin.terminate()
    synfin.wait(timeout=30)
    synfin_connects = metric_total(last_text, "synfin_tcp_connects_total") - metric_total(
        first_text, "synfin_tcp_connects_total"
    )
    steady = [s["rss_mb"] for s in samples if s["t"] >= 60] or [s["rss_mb"] for s in samples]
    result = {
        "tier": tier,
        "ground_truth": args.ground_truth,
        "minutes": args.minutes,
        "connections_made": connections,
        "synfin_connects": synfin_connects,
        "kernel_active_opens": last_kernel - first_kernel,
        "exact": synfin_connects == last_kernel - first_kernel,
        "rss_mb_first_minute_on": steady[0],
        "rss_mb_last": steady[-1],
        "rss_mb_max": max(steady),
        "tracked_at_end": samples[-1]["tracked"] if samples else None,
        "kernel_sockets_at_end": kernel_sockets,
        "evictions": samples[-1]["evictions"] if samples else None,
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    return 0 if result["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
