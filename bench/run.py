"""synfin's overhead and exactness under load, beside nothing attached and bcc's tcpstates.

    sudo .venv/bin/python bench/run.py [--rounds 3] [--requests 20000] [--concurrency 20]

Starts nginx on loopback, then for each round runs `ab` once per configuration, in turn:
nothing attached (the limit), a bare `bpftrace` counter on `sock:inet_sock_set_state` (the
floor of any tracepoint observer), `synfin run` (metrics only: its default tier, lean where the
kernel allows, and `run-timers`, the timers tier forced), `synfin watch --json > /dev/null`
(per-event streaming), `synfin trace` with a filter that matches nothing (`trace-none`) and
with none at all (`trace-all`, every connection drawn as JSON), and bcc's `tcpstates` writing
to /dev/null; with `--baseline PATH --configs none,run,run-baseline`, another installation's
`synfin run` beside this one, and with `--variant NAME=PATH` (repeatable) more of them, each
measured as `run-NAME` (patched probes for an ablation, say). Each `ab` request is one TCP
connection (HTTP/1.0, no keep-alive). Writes raw results as JSON and a Markdown table.
Installs nginx-light, apache2-utils, bpfcc-tools and bpftrace from the distribution if missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from observer import memory_mb
from plot import line_chart

from synfin.kernel.procfs import PROC, ProcNet

ROOT = Path(__file__).resolve().parent.parent
SYNFIN = str(ROOT / ".venv" / "bin" / "synfin")
NGINX_PORT = 18080
METRICS_PORT = 19977
PACKAGES = {
    "nginx": "nginx-light", "ab": "apache2-utils", "tcpstates-bpfcc": "bpfcc-tools",
    "bpftrace": "bpftrace",
}  # fmt: skip
CONFIGS = (
    "none", "bpftrace", "run", "run-timers", "run-baseline", "watch", "watch-per-connection",
    "trace-none", "trace-all",
    "tcpstates",
)  # fmt: skip
# A hash-map counter by old and new state: what any observer of the tracepoint pays at least.
BARE_COUNTER = (
    "tracepoint:sock:inet_sock_set_state /args->protocol == 6/ "
    "{ @transitions[args->oldstate, args->newstate] = count(); }"
)
# `synfin run` of another installation (--baseline), e.g. the previous release's, in the same
# rotation: a change's cost is read as a ratio measured beside its predecessor.
RUNS = ("run", "run-timers", "run-baseline")


def is_run(config: str) -> bool:
    """`synfin run` of some installation: its counts are checked against the kernel's."""
    return config in RUNS or config.startswith("run-")


STREAMING = ("watch", "watch-per-connection", "trace-none", "trace-all", "tcpstates")
# trace's summary line: "... drawn from S segments and E state events, L lost".
LOST = {"watch": rb"(\d+) events, (\d+) lost", "trace-all": rb"events, ()(\d+) lost",
        "watch-per-connection": rb"(\d+) connection records, (\d+) lost",
        "trace-none": rb"events, ()(\d+) lost"}  # fmt: skip


@dataclass
class Result:
    config: str
    round: int
    concurrency: int
    requests_per_second: float
    connections: int  # ActiveOpens during the run (the kernel's count)
    observer_cpu_seconds: float = 0.0
    observer_peak_rss_mb: float = 0.0  # VmHWM: includes compiling the probes at start
    observer_rss_mb: float = 0.0  # VmRSS after the run: what it holds while it works
    synfin_connects: int | None = None  # synfin_tcp_connects_total delta (run)
    synfin_accepts: int | None = None
    kernel_passive_opens: int = 0
    delivered: int | None = None  # records a streaming observer printed
    lost: int | None = None  # records synfin says it lost (watch)
    notes: list[str] = field(default_factory=list)


def ensure_tools() -> None:
    missing = [package for tool, package in PACKAGES.items() if not shutil.which(tool)]
    if missing:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True
        )


@contextmanager
def nginx() -> Iterator[None]:
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "nginx.conf"
        config.write_text(
            f"daemon off; worker_processes 1; pid {folder}/nginx.pid; error_log stderr error;\n"
            "events { worker_connections 4096; }\n"
            f"http {{ access_log off; keepalive_timeout 0; client_body_temp_path {folder};\n"
            f"  server {{ listen 127.0.0.1:{NGINX_PORT}; location / {{ return 200 'ok'; }} }} }}\n"
        )
        process = subprocess.Popen(["nginx", "-c", str(config)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        try:
            yield
        finally:
            process.terminate()
            process.wait(timeout=10)


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(names: tuple[str, ...]) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics") as reply:
        text = reply.read().decode()
    totals = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def start_observer(
    config: str, sink: Path, installs: dict[str, str]
) -> subprocess.Popen[bytes] | None:
    serve = ["run", f"--listen-address=127.0.0.1:{METRICS_PORT}", "--ground-truth=off"]
    commands = {
        "bpftrace": ["bpftrace", "-e", BARE_COUNTER],
        "run": [SYNFIN, *serve],
        "run-timers": [SYNFIN, *serve, "--probe-tier=timers"],
        **{f"run-{name}": [path, *serve] for name, path in installs.items()},
        "watch": [SYNFIN, "watch", "--json"],
        "watch-per-connection": [
            SYNFIN,
            "watch",
            "--per-connection",
            "--json",
            "--max-sockets",
            "262144",
        ],
        # Port 1: nothing on loopback uses it, so the filters in the kernel drop everything.
        "trace-none": [SYNFIN, "trace", "--port", "1", "--format", "json"],
        "trace-all": [SYNFIN, "trace", "--format", "json", "--time-wait", "skip"],
        "tcpstates": ["tcpstates-bpfcc"],
    }
    if config == "none":
        return None
    out = sink.open("wb")
    process = subprocess.Popen(commands[config], stdout=out, stderr=subprocess.PIPE)
    assert process.stderr is not None
    if config in ("tcpstates", "bpftrace"):  # a header line once attached
        deadline = time.monotonic() + 60
        while sink.stat().st_size == 0 and time.monotonic() < deadline:  # its header: attached
            time.sleep(0.1)
    else:
        process.stderr.readline()  # "serving ..." / "tracing ...": attached
    return process


def ab(requests: int, concurrency: int) -> float:
    output = subprocess.run(
        ["ab", "-q", "-n", str(requests), "-c", str(concurrency), f"http://127.0.0.1:{NGINX_PORT}/"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"Requests per second:\s+([\d.]+)", output)
    assert match, output
    return float(match[1])


def measure(
    config: str, number: int, requests: int, concurrency: int, installs: dict[str, str]
) -> Result:
    with tempfile.TemporaryDirectory() as folder:
        sink = Path(folder) / "out"
        observer = start_observer(config, sink, installs)
        try:
            return _measure_with(observer, config, number, requests, concurrency, sink)
        finally:
            if observer is not None and observer.poll() is None:
                observer.kill()  # a failed run must not leave probes attached
                observer.wait()


def _measure_with(
    observer: subprocess.Popen[bytes] | None,
    config: str,
    number: int,
    requests: int,
    concurrency: int,
    sink: Path,
) -> Result:
    names = ("synfin_tcp_connects_total", "synfin_tcp_accepts_total")
    # Scrape, then read the kernel: the scrape's own connection is in both counts.
    metrics_before = scrape(names) if is_run(config) else {}
    cpu_before = process_cpu(observer.pid) if observer else 0.0
    kernel_before = ProcNet(PROC).tcp()
    rate = ab(requests, concurrency)
    time.sleep(0.5)  # let the last closes and the stream settle
    metrics_after = scrape(names) if is_run(config) else {}
    kernel_after = ProcNet(PROC).tcp()
    result = Result(
        config,
        number,
        concurrency,
        rate,
        kernel_after["ActiveOpens"] - kernel_before["ActiveOpens"],
    )
    result.kernel_passive_opens = kernel_after["PassiveOpens"] - kernel_before["PassiveOpens"]
    if observer is None:
        return result
    result.observer_cpu_seconds = process_cpu(observer.pid) - cpu_before
    result.observer_peak_rss_mb = memory_mb(observer.pid, "VmHWM")
    result.observer_rss_mb = memory_mb(observer.pid, "VmRSS")
    if is_run(config):
        result.synfin_connects = int(metrics_after[names[0]] - metrics_before[names[0]])
        result.synfin_accepts = int(metrics_after[names[1]] - metrics_before[names[1]])
    observer.send_signal(signal.SIGINT)
    try:
        _, stderr = observer.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # tcpstates has hung on SIGINT once: stop it, note it
        observer.kill()
        _, stderr = observer.communicate()
        result.notes.append("did not exit within 60 s of SIGINT: killed")
    if config in STREAMING:
        result.delivered = sum(1 for _ in sink.open("rb"))
    if config in LOST:
        summary = re.search(LOST[config], stderr)
        if summary:
            result.lost = int(summary[2])
    return result


def configs_of(results: list[Result]) -> list[str]:
    """The configurations measured, in the order first measured."""
    return list(dict.fromkeys(r.config for r in results))


def ratios(results: list[Result]) -> dict[str, dict[int, float]]:
    """Median throughput relative to nothing attached, by configuration and concurrency."""
    curves: dict[str, dict[int, float]] = {}
    for concurrency in sorted({r.concurrency for r in results}):
        runs = [r for r in results if r.concurrency == concurrency]
        limit = statistics.median(r.requests_per_second for r in runs if r.config == "none")
        for config in configs_of(results):
            rates = [r.requests_per_second for r in runs if r.config == config]
            if rates:
                curves.setdefault(config, {})[concurrency] = statistics.median(rates) / limit
    return curves


def table(results: list[Result]) -> str:
    return "\n\n".join(
        f"Concurrency {c}:\n\n" + concurrency_table([r for r in results if r.concurrency == c])
        for c in sorted({r.concurrency for r in results})
    )


def concurrency_table(results: list[Result]) -> str:
    by_config = {c: [r for r in results if r.config == c] for c in configs_of(results)}
    limit = statistics.median(r.requests_per_second for r in by_config["none"])
    rows = [
        "| configuration | requests/s (median) | vs. nothing | observer CPU s | RSS MB (peak) "
        "| counted exactly |",
        "|---|---|---|---|---|---|",
    ]
    for config, runs in by_config.items():
        rate = statistics.median(r.requests_per_second for r in runs)
        if is_run(config):
            exact = all(
                r.synfin_connects == r.connections and r.synfin_accepts == r.kernel_passive_opens
                for r in runs
            )
            counted = "yes: connects = ActiveOpens, accepts = PassiveOpens" if exact else "NO"
        elif config.startswith("watch"):
            delivered, lost = sum(r.delivered or 0 for r in runs), sum(r.lost or 0 for r in runs)
            counted = f"stream: {delivered} records, {lost} lost"
        elif config.startswith("trace"):
            drawn, lost = sum(r.delivered or 0 for r in runs), sum(r.lost or 0 for r in runs)
            made = sum(r.connections for r in runs)
            counted = f"drew {drawn} of {made} connections, {lost} records lost"
        elif config == "tcpstates":
            counted = f"stream: {sum(r.delivered or 0 for r in runs)} lines (no loss count)"
        else:
            counted = "-"
        cpu = statistics.median(r.observer_cpu_seconds for r in runs)
        rss = max(r.observer_rss_mb for r in runs)
        peak = max(r.observer_peak_rss_mb for r in runs)
        rows.append(
            f"| {config} | {rate:,.0f} | {rate / limit:.3f} | {cpu:.2f} | {rss:.0f} ({peak:.0f}) "
            f"| {counted} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", default="20", help="one level, or a sweep: 1,10,50,200")
    parser.add_argument("--configs", default=",".join(c for c in CONFIGS if c != "run-baseline"))
    parser.add_argument(
        "--baseline", help="another installation's synfin executable, measured as run-baseline"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another installation's synfin executable, measured as run-NAME (repeatable)",
    )
    parser.add_argument("--raw", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--plot", type=Path, help="write throughput vs. concurrency as SVG")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (it loads BPF programs and installs tools)", file=sys.stderr)
        return 3
    ensure_tools()
    configs = [c for c in args.configs.split(",") if c]
    if "run-baseline" in configs and not args.baseline:
        print("bench: run-baseline needs --baseline PATH/TO/synfin", file=sys.stderr)
        return 2
    installs = dict(variant.split("=", 1) for variant in args.variant if "=" in variant)
    if len(installs) != len(args.variant):
        print("bench: --variant takes NAME=PATH/TO/synfin", file=sys.stderr)
        return 2
    if args.baseline:
        installs["baseline"] = args.baseline
    levels = [int(level) for level in args.concurrency.split(",")]
    results: list[Result] = []
    with nginx():
        ab(2000, levels[0])  # warm-up
        for number in range(args.rounds):
            order = configs[number % len(configs) :] + configs[: number % len(configs)]
            for concurrency in levels:
                for config in order:
                    result = measure(config, number, args.requests, concurrency, installs)
                    print(json.dumps(asdict(result)), flush=True)
                    results.append(result)
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    raw = {
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    raw["results"] = [asdict(r) for r in results]
    args.raw.write_text(json.dumps(raw, indent=1))
    print(table(results))
    if args.plot:
        args.plot.write_text(line_chart(ratios(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
