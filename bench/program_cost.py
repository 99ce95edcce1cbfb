"""What each attached BPF program costs per run, from the kernel's own accounting.

    sudo .venv/bin/python bench/program_cost.py [--configs bpftrace,run,run-timers]
        [--requests 60000] [--variant NAME=PATH/TO/synfin ...]

With `kernel.bpf_stats_enabled=1` the kernel times every run of every program (run_cnt,
run_time_ns in `bpftool prog show`). For each configuration this starts the observer, runs
`ab` against nginx on loopback (as bench/run.py does), and prints each program's runs and
nanoseconds per run over the `ab` run, and the total per connection: a finer ablation than
throughput ratios, which this shared machine makes noisy. The sysctl is put back afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from run import ab, ensure_tools, nginx, start_observer

from synfin.kernel.procfs import PROC, ProcNet

STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


def program_times() -> dict[int, tuple[str, int, int]]:
    """id -> (name, runs, nanoseconds) of every loaded program the kernel has timed."""
    listed = json.loads(
        subprocess.run(
            ["bpftool", "--json", "prog", "show"], capture_output=True, text=True, check=True
        ).stdout
    )
    return {
        prog["id"]: (prog.get("name", "?"), prog["run_cnt"], prog["run_time_ns"])
        for prog in listed
        if "run_cnt" in prog
    }


def measure(config: str, requests: int, installs: dict[str, str]) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        observer = start_observer(config, Path(folder) / "out", installs)
        try:
            before, opens = program_times(), ProcNet(PROC).tcp()["ActiveOpens"]
            rate = ab(requests, 20)
            after, made = program_times(), ProcNet(PROC).tcp()["ActiveOpens"] - opens
        finally:
            if observer is not None:
                observer.send_signal(signal.SIGINT)
                observer.communicate(timeout=60)
    lines, total = [], 0
    for prog_id, (name, runs_now, ns_now) in sorted(after.items()):
        old = before.get(prog_id, (name, 0, 0))
        runs, ns = runs_now - old[1], ns_now - old[2]
        if runs:
            total += ns
            lines.append(f"| {config} | {name} | {runs:,} | {ns / runs:.0f} |")
    lines.append(f"| {config} | all, per connection ({rate:,.0f} conn/s) | {made:,} | "
                 f"{total / max(made, 1):.0f} |")  # fmt: skip
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="bpftrace,run,run-timers")
    parser.add_argument("--requests", type=int, default=60000)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (it loads BPF programs and sets a sysctl)", file=sys.stderr)
        return 3
    installs = dict(variant.split("=", 1) for variant in args.variant if "=" in variant)
    ensure_tools()
    saved = STATS.read_text()
    rows = ["| configuration | program | runs | ns per run |", "|---|---|---|---|"]
    try:
        STATS.write_text("1")
        with nginx():
            ab(2000, 20)  # warm-up
            for config in args.configs.split(","):
                rows += measure(config, args.requests, installs)
    finally:
        STATS.write_text(saved)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
