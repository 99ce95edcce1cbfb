"""Streaming at a controlled rate: how many events `synfin watch` delivers and loses.

    sudo .venv/bin/python bench/stream_rate.py [--rates 1000,2000,4000,6000,8000] [--seconds 10]

`ab` runs as fast as it can; this paces connections instead (bench/pacer.c, compiled on the
fly), at each rate in turn, against nginx on loopback, with `synfin watch --json > /dev/null`
attached. Both ends are local, so each connection makes about a dozen kernel events. For each
rate: events per second produced (delivered + lost), delivered, lost as synfin counts them,
and whether delivered + lost equals what the probe says it produced. Writes
bench/results/stream_rate.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from observer import ROOT, SYNFIN
from run import NGINX_PORT, ensure_tools, nginx

PACER_SOURCE = Path(__file__).resolve().parent / "pacer.c"


@dataclass
class RatePoint:
    target_per_second: int
    connections: int
    seconds: float
    delivered: int
    lost: int

    @property
    def events_per_second(self) -> float:
        return (self.delivered + self.lost) / self.seconds


def build_pacer(folder: Path) -> Path:
    if not shutil.which("cc"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "gcc"], check=True)
    binary = folder / "pacer"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(PACER_SOURCE)], check=True)
    return binary


def measure(pacer: Path, rate: int, seconds: float, workers: int) -> RatePoint:
    with tempfile.TemporaryFile() as sink:
        watch = subprocess.Popen([SYNFIN, "watch", "--json"], stdout=sink, stderr=subprocess.PIPE)
        try:
            assert watch.stderr is not None
            watch.stderr.readline()  # "tracing ...": attached
            paced = subprocess.run(
                [str(pacer), "127.0.0.1", str(NGINX_PORT), str(rate), str(seconds), str(workers)],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            time.sleep(1.0)  # the last closes, and the reader catches up
        finally:
            # However the run ends, the observer goes (and its probes detach).
            watch.send_signal(signal.SIGINT)
            _, stderr = watch.communicate(timeout=60)
    summary = re.search(rb"(\d+) events, (\d+) lost", stderr)
    made = re.match(r"(\d+) connections in ([\d.]+) s", paced)
    assert summary and made, (stderr, paced)
    # Rates over the paced seconds: the events came then (the second after adds a few closes).
    return RatePoint(rate, int(made[1]), float(made[2]), int(summary[1]), int(summary[2]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,2000,4000,6000,8000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--raw", type=Path, default=ROOT / "bench" / "results" / "stream_rate.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (it loads BPF programs)", file=sys.stderr)
        return 3
    ensure_tools()
    points: list[RatePoint] = []
    with tempfile.TemporaryDirectory() as folder, nginx():
        pacer = build_pacer(Path(folder))
        for rate in (int(r) for r in args.rates.split(",")):
            point = measure(pacer, rate, args.seconds, args.workers)
            print(json.dumps(asdict(point)), flush=True)
            points.append(point)
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    args.raw.write_text(json.dumps([asdict(p) for p in points], indent=1))
    print("| connections/s asked | made | events/s | delivered | lost | lost % |")
    print("|---|---|---|---|---|---|")
    for p in points:
        share = 100 * p.lost / max(p.delivered + p.lost, 1)
        print(
            f"| {p.target_per_second:,} | {p.connections / p.seconds:,.0f} | "
            f"{p.events_per_second:,.0f} | {p.delivered:,} | {p.lost:,} | {share:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
