"""Generate synfin's Grafana dashboards (dashboards/grafana/*.json).

    python dashboards/build.py          # rewrite the JSON
    python dashboards/build.py --check  # exit 1 if the committed JSON differs

Plain Python, no SDK: every panel comes from a few helpers, so units, descriptions and the
datasource variable are set the same way everywhere, and tests/integration/test_dashboards.py checks the
result and evaluates every query against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # run as a script from anywhere

from diagram import diagram_panel
from panels import health_panels, overview_panels
from widgets import dashboard

OUT = Path(__file__).parent / "grafana"


def write(name: str, board: dict[str, Any], check: bool) -> bool:
    text = json.dumps(board, indent=2, sort_keys=True) + "\n"
    path = OUT / f"{name}.json"
    if check:
        return path.exists() and path.read_text() == text
    OUT.mkdir(exist_ok=True)
    path.write_text(text)
    return True


def main() -> int:

    parser = argparse.ArgumentParser(description="Generate synfin's Grafana dashboards.")
    parser.add_argument(
        "--check", action="store_true", help="Exit 1 if the committed JSON is stale."
    )
    args = parser.parse_args()
    boards = {
        "synfin-overview": dashboard(
            "synfin-overview",
            "synfin: TCP handshake & teardown",
            "The textbook state diagram with live counts, and how connections open and close.",
            [diagram_panel(), *overview_panels()],
            port=True,
        ),
        "synfin-health": dashboard(
            "synfin-health",
            "synfin: health",
            "Is synfin attached, complete and in agreement with the kernel's own counters?",
            health_panels(),
        ),
    }
    fresh = [write(name, board, args.check) for name, board in boards.items()]
    if args.check and not all(fresh):
        print("dashboards/grafana is stale: run python dashboards/build.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
