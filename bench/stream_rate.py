"""Streaming at a controlled rate: how much of a busy host each live mode delivers and loses.

    sudo .venv/bin/python bench/stream_rate.py [--modes watch,record,per-connection,trace]
        [--rates 1000,2000,5000] [--seconds 10]

`ab` runs as fast as it can; this paces connections instead (bench/pacer.c, compiled on the
fly), at each rate in turn, against nginx on loopback, with one live mode attached:

  watch            `synfin watch --json > /dev/null`: a record per step (about twelve per
                   connection, both ends being local)
  record           `synfin record -o FILE`: the same records, written for replay
  per-connection   `synfin watch --per-connection --json`: a record per socket end
  trace            `synfin trace --format json --time-wait skip`: a ladder per connection,
                   from state events and captured segments

For each: records per second produced (delivered + lost), delivered, lost as synfin counts
them, and for trace how many connections were drawn complete (handshake and teardown both
seen). Per-connection records of ends still in TIME-WAIT when the run stops are not produced
yet, so they are neither delivered nor lost; delivered + lost is what the probe produced.
Writes bench/results/stream_rate.json and prints a Markdown table.
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


MODES = {
    "watch": ["watch", "--json"],
    "record": ["record", "-o", "{folder}/recording.jsonl"],
    "per-connection": ["watch", "--per-connection", "--json", "--max-sockets", "262144"],
    "trace": ["trace", "--format", "json", "--time-wait", "skip"],
}
SUMMARY = re.compile(rb"(\d+) (?:events|connection records), (\d+) lost")
TRACED = re.compile(
    rb"(\d+) connection\(s\) drawn from (\d+) segments and (\d+) state events, (\d+) lost"
)


@dataclass
class RatePoint:
    mode: str
    target_per_second: int
    connections: int
    seconds: float
    delivered: int  # records decoded (trace: state events and segments)
    lost: int
    drawn_complete: int | None = None  # trace: ladders with the handshake and the teardown

    @property
    def records_per_second(self) -> float:
        return (self.delivered + self.lost) / self.seconds


def build_pacer(folder: Path) -> Path:
    if not shutil.which("cc"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "gcc"], check=True)
    binary = folder / "pacer"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(PACER_SOURCE)], check=True)
    return binary


def measure(mode: str, pacer: Path, rate: int, seconds: float, workers: int) -> RatePoint:
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryFile() as sink:
        command = [SYNFIN, *(part.format(folder=folder) for part in MODES[mode])]
        # Lines go to /dev/null (record writes its file); trace's are counted afterwards.
        out = sink if mode == "trace" else subprocess.DEVNULL
        observer = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE)
        try:
            assert observer.stderr is not None
            observer.stderr.readline()  # "tracing ..." / "capturing ...": attached
            paced = subprocess.run(
                [str(pacer), "127.0.0.1", str(NGINX_PORT), str(rate), str(seconds), str(workers)],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            time.sleep(2.0)  # the last closes, and the reader catches up
        finally:
            # However the run ends, the observer goes (and its probes detach).
            observer.send_signal(signal.SIGINT)
            _, stderr = observer.communicate(timeout=120)
        made = re.match(r"(\d+) connections in ([\d.]+) s", paced)
        assert made, paced
        point = RatePoint(mode, rate, int(made[1]), float(made[2]), 0, 0)
        if mode == "trace":
            traced = TRACED.search(stderr)
            assert traced, stderr
            point.delivered, point.lost = int(traced[2]) + int(traced[3]), int(traced[4])
            sink.seek(0)
            ladders = [json.loads(line) for line in sink if line.strip()]
            point.drawn_complete = sum(
                1 for ladder in ladders if ladder["complete"] and ladder["handshake_seen"]
            )
        else:
            summary = SUMMARY.search(stderr)
            assert summary, stderr
            point.delivered, point.lost = int(summary[1]), int(summary[2])
    return point


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--rates", default="1000,2000,5000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--raw", type=Path, default=ROOT / "bench" / "results" / "stream_rate.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (it loads BPF programs)", file=sys.stderr)
        return 3
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - MODES.keys())
    if unknown:
        print(
            f"bench: unknown mode(s) {', '.join(unknown)}: use {', '.join(MODES)}", file=sys.stderr
        )
        return 2
    ensure_tools()
    points: list[RatePoint] = []
    with tempfile.TemporaryDirectory() as folder, nginx():
        pacer = build_pacer(Path(folder))
        for mode in modes:
            for rate in (int(r) for r in args.rates.split(",")):
                point = measure(mode, pacer, rate, args.seconds, args.workers)
                print(json.dumps(asdict(point)), flush=True)
                points.append(point)
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    args.raw.write_text(json.dumps([asdict(p) for p in points], indent=1))
    columns = ("mode", "connections/s asked", "made", "records/s", "delivered", "lost",
               "lost %", "drawn complete")  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for p in points:
        share = 100 * p.lost / max(p.delivered + p.lost, 1)
        drawn = "" if p.drawn_complete is None else f"{p.drawn_complete:,} of {p.connections:,}"
        print(
            f"| {p.mode} | {p.target_per_second:,} | {p.connections / p.seconds:,.0f} | "
            f"{p.records_per_second:,.0f} | {p.delivered:,} | {p.lost:,} | {share:.2f} | {drawn} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
