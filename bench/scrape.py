"""/metrics scrape latency against the number of sockets synfin tracks, and its start-up time.

    sudo .venv/bin/python bench/scrape.py [--sizes 1000,10000,100000] [--scrapes 300]

Starts `synfin run` with room for every socket, then opens loopback connections (each one is
two tracked sockets: the client's and the accepted one) until synfin's own gauge
`synfin_bpf_map_entries{map="sockets"}` reaches each size, and scrapes `/metrics` over a new
connection each time, as Prometheus does. Start-up is timed twice: to the "serving" line
(probes compiled, loaded and attached) and to the first answered scrape.
Writes raw results as JSON and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection
from pathlib import Path

from observer import memory_mb, start_synfin_run

ROOT = Path(__file__).resolve().parent.parent
METRICS_PORT = 19978
METRICS_URL = f"http://127.0.0.1:{METRICS_PORT}/metrics"


@dataclass
class Point:
    tracked_sockets: int
    scrapes: int
    median_ms: float
    p99_ms: float
    max_ms: float
    response_bytes: int
    daemon_rss_mb: float


def fetch_metrics() -> bytes:
    with urllib.request.urlopen(METRICS_URL, timeout=10) as reply:
        return reply.read()


def tracked_sockets() -> int:
    for line in fetch_metrics().decode().splitlines():
        if line.startswith('synfin_bpf_map_entries{map="sockets"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    raise RuntimeError("synfin_bpf_map_entries is missing from /metrics")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


PER_WORKER = 9000  # connections: both ends' descriptors fit the hard limit of 20,000 here


def hold_connections(connections: int, ready: Connection, release: Connection) -> None:
    """In a worker process: open `connections` loopback connections and hold them until told."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    held = []
    for _ in range(connections):
        held.append(socket.create_connection(listener.getsockname()))
        held.append(listener.accept()[0])
    ready.send(len(held))
    release.recv()


class ConnectionPool:
    """Established loopback connections, both ends held open by worker processes, each within
    the per-process descriptor limit (which needs CAP_SYS_RESOURCE to raise)."""

    def __init__(self) -> None:
        self.workers: list[tuple[Process, Connection]] = []

    def open(self, connections: int) -> None:
        while connections > 0:
            share = min(connections, PER_WORKER)
            ready_in, ready_out = Pipe(duplex=False)
            release_in, release_out = Pipe(duplex=False)
            worker = Process(target=hold_connections, args=(share, ready_out, release_in))
            worker.start()
            ready_in.recv()
            self.workers.append((worker, release_out))
            connections -= share

    def close(self) -> None:
        for worker, release in self.workers:
            release.send(None)
            worker.join(timeout=30)


def start_daemon(capacity: int) -> tuple[subprocess.Popen[bytes], float, float]:
    began = time.monotonic()
    daemon = start_synfin_run(METRICS_PORT, f"--max-sockets={capacity}")
    attached = time.monotonic() - began
    fetch_metrics()
    return daemon, attached, time.monotonic() - began


def measure(daemon: subprocess.Popen[bytes], scrapes: int) -> Point:
    latencies = []
    size = 0
    for _ in range(scrapes):
        began = time.perf_counter()
        size = len(fetch_metrics())
        latencies.append((time.perf_counter() - began) * 1000)
    return Point(
        tracked_sockets=tracked_sockets(),
        scrapes=scrapes,
        median_ms=round(statistics.median(latencies), 2),
        p99_ms=round(percentile(latencies, 0.99), 2),
        max_ms=round(max(latencies), 2),
        response_bytes=size,
        daemon_rss_mb=round(memory_mb(daemon.pid), 1),
    )


def table(points: list[Point]) -> str:
    rows = [
        "| tracked sockets | scrapes | median ms | p99 ms | max ms | response bytes | RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in points:
        rows.append(
            f"| {p.tracked_sockets:,} | {p.scrapes} | {p.median_ms} | {p.p99_ms} | {p.max_ms} "
            f"| {p.response_bytes:,} | {p.daemon_rss_mb} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--raw", type=Path, default=ROOT / "bench" / "results" / "scrape.json")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    capacity = 2 * max(sizes) + 65536

    daemon, attached_s, first_scrape_s = start_daemon(capacity)
    pool = ConnectionPool()
    points = []
    try:
        for size in sizes:
            while (have := tracked_sockets()) < size:
                pool.open(max(1, (size - have) // 2))
                time.sleep(0.2)
            points.append(measure(daemon, args.scrapes))
            print(f"{points[-1]}", flush=True)
    finally:
        pool.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)

    report = {
        "startup_to_attached_s": round(attached_s, 2),
        "startup_to_first_scrape_s": round(first_scrape_s, 2),
        "points": [asdict(point) for point in points],
    }
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    args.raw.write_text(json.dumps(report, indent=2) + "\n")
    print(f"start-up: attached after {attached_s:.2f} s, first scrape after {first_scrape_s:.2f} s")
    print(table(points))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
