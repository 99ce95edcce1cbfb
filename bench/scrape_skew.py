"""How far apart two series that count the same connections are within one scrape, per tier.

    sudo .venv/bin/python bench/scrape_skew.py [--configs run,run-timers] [--rounds 2]

One scrape reads synfin's maps one after another while connections go on. Every connection
that completes is counted in `synfin_tcp_connects_total{result="established"}` and in the
client's `synfin_tcp_handshake_duration_seconds_count` by the same program run, and in
`synfin_tcp_accepts_total` and the server's handshake count likewise; so within a scrape their
difference moves only by the connections that completed between the reads of the two maps.
During bench/missed_runs.py's churn (one Python process connecting and accepting on loopback
as fast as it can), this scrapes /metrics in a loop and prints, per configuration, the spread
(largest minus smallest) of each difference over the scrapes, and how much each moved from
before the churn to a scrape after it (connections counted in one series and never in the
other: those widen the spread too).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

from missed_runs import churn
from run import METRICS_PORT, start_observer

URL = f"http://127.0.0.1:{METRICS_PORT}/metrics"
CLIENT = 'synfin_tcp_handshake_duration_seconds_count{role="client"}'
SERVER = 'synfin_tcp_handshake_duration_seconds_count{role="server"}'


def differences() -> tuple[float, float]:
    """(established connects - client handshakes, accepts - server handshakes) in one scrape."""
    connects = accepts = client = server = 0.0
    with urllib.request.urlopen(URL, timeout=10) as response:
        for line in response.read().decode().splitlines():
            sample, _, value = line.rpartition(" ")
            if sample.startswith("synfin_tcp_connects_total{") and 'result="established"' in sample:
                connects += float(value)
            elif sample.startswith("synfin_tcp_accepts_total{"):
                accepts += float(value)
            elif sample == CLIENT:
                client = float(value)
            elif sample == SERVER:
                server = float(value)
    return connects - client, accepts - server


def scrape_until(stop: threading.Event, seen: list[tuple[float, float]]) -> None:
    while not stop.is_set():
        seen.append(differences())


def measure(config: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        observer = start_observer(config, Path(folder) / "out", {})
        assert observer is not None
        stop, seen = threading.Event(), []
        reader = threading.Thread(target=scrape_until, args=(stop, seen))
        try:
            first = differences()
            reader.start()
            rate = churn()
            stop.set()
            reader.join()
            last = differences()
        finally:
            stop.set()
            observer.send_signal(signal.SIGINT)
            observer.communicate(timeout=60)

    def spread(values: list[float]) -> float:
        return max(values) - min(values)

    opens, accepts = spread([c for c, _ in seen]), spread([a for _, a in seen])
    moved = [f"{b - a:,.0f}" for a, b in zip(first, last, strict=True)]
    return (
        f"| {config} | {rate:,.0f} | {len(seen):,} | {opens:,.0f} ({moved[0]}) "
        f"| {accepts:,.0f} ({moved[1]}) |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="run,run-timers")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (it loads BPF programs)", file=sys.stderr)
        return 3
    rows = [
        "| configuration | conn/s | scrapes | connects - client handshakes: spread (moved) "
        "| accepts - server handshakes: spread (moved) |",
        "|---|---|---|---|---|",
    ]
    for _round in range(args.rounds):
        for config in args.configs.split(","):
            rows.append(measure(config))
            print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
