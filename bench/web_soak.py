"""Soak for the web view: a page left open while the lab plays without pause.

    sudo .venv/bin/python bench/web_soak.py [--minutes 20] [--per-minute 600]

Runs `synfin lab ... --loop --web` (the web view in the lab's process) and keeps one page of
it open in a headless Chromium (tests/browser.py). Every 10 s it samples the process's RSS,
the page's JavaScript heap (DevTools Runtime.getHeapUsage), the rows the page lists and its
status line. A page that stays live with a flat heap and a flat RSS over the run is what "left
open for an hour" asks; the lab's rate packs hours of a learner's traffic into minutes.
Writes bench/results/web_soak.json (or --out) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from observer import memory_mb  # noqa: E402

from tests.browser import Browser  # noqa: E402

PORT = 19978
SCENARIOS = ("client-closes", "server-closes", "reset-abort", "refused")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--per-minute", type=float, default=600)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "web_soak.json")
    args = parser.parse_args()
    lab = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "synfin"), "lab", *SCENARIOS, "--loop", "--per-minute",
         str(args.per_minute), "--web", f"127.0.0.1:{PORT}", "--port", "22000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    samples = []
    try:
        assert lab.stderr is not None
        line = lab.stderr.readline()
        if "serving" not in line:
            print(f"web_soak: synfin lab --web did not start: {line}", file=sys.stderr)
            return 1
        with Browser() as browser:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{PORT}/")
            started = time.monotonic()
            while time.monotonic() - started < args.minutes * 60:
                time.sleep(10)
                elapsed = time.monotonic() - started
                heap = page.send("Runtime.getHeapUsage")
                samples.append({
                    "t_s": round(elapsed),
                    "rss_mb": round(memory_mb(lab.pid), 1),
                    "page_heap_mb": round(heap["usedSize"] / 2**20, 2),
                    "rows": page.eval("document.querySelectorAll('#connections tr').length"),
                    "status": page.eval("document.getElementById('status').textContent"),
                    "page_errors": len(page.errors),
                })  # fmt: skip
                print(json.dumps(samples[-1]), flush=True)
    finally:
        lab.terminate()
        lab.wait(timeout=60)
    args.out.write_text(json.dumps({"minutes": args.minutes, "per_minute": args.per_minute,
                                    "samples": samples}, indent=1) + "\n")  # fmt: skip
    early = samples[min(5, len(samples) - 1)]
    last = samples[-1]
    print(
        f"web_soak: {len(samples)} samples; RSS {early['rss_mb']} MB at {early['t_s']} s, "
        f"{last['rss_mb']} MB at {last['t_s']} s (peak {max(s['rss_mb'] for s in samples)}); "
        f"page heap {early['page_heap_mb']} -> {last['page_heap_mb']} MB; rows at most "
        f"{max(s['rows'] for s in samples)}; last status: {last['status']}; "
        f"page errors: {last['page_errors']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
