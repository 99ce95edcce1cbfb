"""How many runs of synfin's programs the kernel skips under load, per tier.

    sudo .venv/bin/python bench/missed_runs.py [--configs run,run-timers] [--requests 200000]
        [--rounds 2] [--workloads ab,churn]

The kernel does not nest BPF programs: a hook that fires while a program is already running
on that CPU (an interrupt's softirq handling another socket's packet; for ordinary tracepoint
programs also any other tracepoint program or a bpf() map syscall in progress) is skipped and
counted in the program's recursion_misses, which synfin exports as
synfin_probe_missed_runs_total. For each configuration and workload (`ab` against nginx on
loopback as bench/run.py does; `churn`: one Python process whose two threads connect-and-close
and accept-and-close on loopback, as many as they can in CHURN_SECONDS) this runs the workload
twice: alone, and with a reader scraping /metrics in a tight loop (every scrape reads synfin's
maps through bpf() syscalls); and prints the runs skipped against the transitions counted.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

from run import METRICS_PORT, ab, ensure_tools, nginx, start_observer

URL = f"http://127.0.0.1:{METRICS_PORT}/metrics"
CHURN_SECONDS = 15
CHURN = f"""
import socket, threading, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 5556))
server.listen(1024)
def serve():
    while True:
        server.accept()[0].close()
threading.Thread(target=serve, daemon=True).start()
end, made = time.monotonic() + {CHURN_SECONDS}, 0
while time.monotonic() < end:
    socket.create_connection(("127.0.0.1", 5556)).close()
    made += 1
print(made / {CHURN_SECONDS})
"""


def churn() -> float:
    """Connections per second of the churn workload."""
    done = subprocess.run([sys.executable, "-c", CHURN], capture_output=True, text=True, check=True)
    return float(done.stdout)


def scrape() -> dict[str, float]:
    """Sum of every sample of each metric family of interest."""
    totals = {"synfin_probe_missed_runs_total": 0.0, "synfin_tcp_state_transitions_total": 0.0}
    with urllib.request.urlopen(URL, timeout=10) as response:
        for line in response.read().decode().splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in totals:
                totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def scrape_until(stop: threading.Event, count: list[int]) -> None:
    while not stop.is_set():
        scrape()
        count[0] += 1


def measure(config: str, workload: str, requests: int, reader: bool) -> str:
    with tempfile.TemporaryDirectory() as folder:
        observer = start_observer(config, Path(folder) / "out", {})
        assert observer is not None
        stop, scrapes = threading.Event(), [0]
        thread = threading.Thread(target=scrape_until, args=(stop, scrapes))
        try:
            before = scrape()
            if reader:
                thread.start()
            rate = ab(requests, 20) if workload == "ab" else churn()
            stop.set()
            if reader:
                thread.join()
            after = scrape()
        finally:
            observer.send_signal(signal.SIGINT)
            observer.communicate(timeout=60)
    missed = after["synfin_probe_missed_runs_total"] - before["synfin_probe_missed_runs_total"]
    counted = (
        after["synfin_tcp_state_transitions_total"] - before["synfin_tcp_state_transitions_total"]
    )
    one_in = f"1 in {counted / missed:,.0f}" if missed else "none"
    scraping = f"{scrapes[0]:,} scrapes" if reader else "one scrape"
    return (
        f"| {config} | {workload} | {scraping} | {rate:,.0f} | {counted:,.0f} | {missed:,.0f} "
        f"| {one_in} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="run,run-timers")
    parser.add_argument("--requests", type=int, default=200000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workloads", default="ab,churn")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (it loads BPF programs)", file=sys.stderr)
        return 3
    ensure_tools()
    rows = [
        "| configuration | workload | reader | conn/s | transitions | runs skipped | skipped |",
        "|---|---|---|---|---|---|---|",
    ]
    with nginx():
        ab(2000, 20)  # warm-up
        for _round in range(args.rounds):
            for workload in args.workloads.split(","):
                for config in args.configs.split(","):
                    for reader in (False, True):
                        rows.append(measure(config, workload, args.requests, reader))
                        print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
