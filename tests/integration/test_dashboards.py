"""Dashboards and rules: generated JSON is fresh and well formed, rules pass promtool, and
every query of every panel and rule returns data from a real Prometheus that scraped synfin
while scenarios ran (so no misspelt metric or label survives)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from synfin.lab.hosts import HostPair
from synfin.lab.scenarios import SCENARIOS
from tests.paths import REPO

from .servers import prometheus, synfin_run

DASHBOARDS = REPO / "dashboards"
BOARDS = sorted((DASHBOARDS / "grafana").glob("*.json"))
RULES = DASHBOARDS / "rules" / "synfin.rules.yml"
VARIABLES = {"$instance": ".*", "$family": ".*", "$port": ".*", "$__rate_interval": "1m"}


def panels(board: dict[str, object]) -> list[dict[str, object]]:
    return [p for p in board["panels"] if p["type"] != "row"]  # type: ignore[index,union-attr]


def dashboard_queries() -> list[tuple[str, str]]:
    found = []
    for path in BOARDS:
        for panel in panels(json.loads(path.read_text())):
            for target in panel["targets"]:  # type: ignore[union-attr]
                found.append((f"{path.stem}: {panel['title']}", target["expr"]))
    return found


def rules() -> list[dict[str, str]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def test_generated_dashboards_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(DASHBOARDS / "build.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", BOARDS, ids=[path.stem for path in BOARDS])
def test_dashboard_structure(path: Path) -> None:
    board = json.loads(path.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert board["uid"] and board["__inputs"][0]["pluginId"] == "prometheus"
    names = [variable["name"] for variable in board["templating"]["list"]]
    assert names[:3] == ["datasource", "instance", "family"]
    for panel in panels(board):
        where = f"{path.stem}: {panel['title']}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["description"], f"{where} has no description"
        assert panel["fieldConfig"]["defaults"]["unit"], f"{where} has no unit"
        assert panel["targets"], f"{where} has no query"
        for target in panel["targets"]:
            assert target["expr"] and target["datasource"]["uid"] == "${datasource}", where
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, where
        if panel["type"] == "stat":
            assert len(panel["fieldConfig"]["defaults"]["thresholds"]["steps"]) >= 2, (
                f"{where}: thresholds"
            )


def test_the_diagram_shows_every_documented_state() -> None:
    overview = json.loads((DASHBOARDS / "grafana" / "synfin-overview.json").read_text())
    canvas = next(p for p in overview["panels"] if p["type"] == "canvas")
    boxes = {
        element["name"]
        for element in canvas["options"]["root"]["elements"]
        if "\n" in element["config"]["text"].get("fixed", "")
    }
    assert boxes == {
        "CLOSED", "LISTEN", "SYN-SENT", "SYN-RCVD", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
        "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT",
    }  # fmt: skip


def test_rules_pass_promtool() -> None:
    for command in (
        ["check", "rules", str(RULES)],
        ["test", "rules", str(RULES.parent / "tests.yml")],
    ):
        result = subprocess.run(["promtool", *command], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    example = DASHBOARDS / "prometheus" / "prometheus.yml"
    config = subprocess.run(
        ["promtool", "check", "config", str(example)], capture_output=True, text=True, check=False
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_has_severity_summary_description_and_a_runbook() -> None:
    runbook = (REPO / "docs" / "runbook.md").read_text()
    alerts = [rule for rule in rules() if "alert" in rule]
    assert len(alerts) >= 8
    for alert in alerts:
        assert alert["labels"]["severity"] in ("info", "warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], alert[
            "alert"
        ]
        assert f"## {alert['alert']}" in runbook, f"no runbook section for {alert['alert']}"
    for rule in rules():
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def substitute(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


# synfin's metrics and recording rules (and `up`), with their label matchers if any.
SELECTOR = re.compile(
    r"\b(synfin_[a-z0-9_]+|[a-z_]+:synfin_[a-z0-9_]+:[a-z0-9_]+|up)\b(\{[^}]*\})?"
)


def selectors(expr: str) -> set[str]:
    """The vector selectors of an expression, each checkable on its own."""
    return {name + labels for name, labels in SELECTOR.findall(expr)}


_ports = iter(range(38500, 38600, 10))  # a rerun gets new ports: timewait sockets hold old ones


@pytest.mark.bpf
@pytest.mark.netns
def test_every_query_returns_data_from_a_real_scrape(hosts: HostPair, tmp_path: Path) -> None:
    port = next(_ports)
    with (
        synfin_run(f"--port-label={port}", "--ground-truth-interval=1") as (_daemon, listen),
        prometheus(tmp_path, f"127.0.0.1:{listen}", rules=RULES) as prom,
    ):
        # Scenarios that take every arrow of the diagram (and leave TIME-WAIT sockets behind).
        names = ["client-closes", "server-closes", "simultaneous-close", "half-close",
                 "refused", "syn-timeout", "reset-abort", "time-wait-killed"]  # fmt: skip
        for offset, name in enumerate(names):
            SCENARIOS[name].run(hosts, socket.AF_INET, port + offset)
        deadline = time.monotonic() + 90

        def without_data() -> list[str]:
            """Every panel query, recording rule and alert selector that has no data yet."""
            missing = [
                f"panel query {where}"
                for where, expr in dashboard_queries()
                if not prom.series(substitute(expr))
            ]
            for rule in rules():
                if "record" in rule:
                    if not prom.series(rule["expr"]):
                        missing.append(f"recording rule {rule['record']}")
                else:
                    missing += [
                        f"alert {rule['alert']}: {selector}"
                        for selector in selectors(rule["expr"])
                        if not prom.series(selector)
                    ]
            return missing

        # Recording rules run every 30 s, and a rate() needs two scrapes of a counter: one that
        # first moved late (a TIME-WAIT kill is confirmed at the next timer event, a SYN
        # retransmission a second after the SYN) waits more than the others.
        while (missing := without_data()) and time.monotonic() < deadline:
            time.sleep(2)
        assert missing == [], f"no data for: {missing}"
