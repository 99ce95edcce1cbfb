"""Building blocks for synfin's Grafana dashboards: panels, layout, variables.

Every panel gets the datasource variable, a description and a unit from here, the same way.
"""

from __future__ import annotations

from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
FAM = f'{SEL},family=~"$family"'
RATE = "$__rate_interval"

Panel = dict[str, Any]


def _panel(kind: str, title: str, description: str, targets: list[tuple[str, str]], unit: str,
           width: int = 12, height: int = 8, **extra: Any) -> Panel:  # fmt: skip
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (expr, legend) in enumerate(targets)
        ],
        "fieldConfig": {"defaults": {"unit": unit, **extra.pop("defaults", {})}, "overrides": []},
        **extra,
    }


def timeseries(
    title: str, description: str, targets: list[tuple[str, str]], unit: str, **extra: Any
) -> Panel:
    return _panel("timeseries", title, description, targets, unit, **extra)


def stat(title: str, description: str, targets: list[tuple[str, str]], unit: str, thresholds: list[tuple[str, float | None]],
         **extra: Any) -> Panel:  # fmt: skip
    steps = [{"color": color, "value": value} for color, value in thresholds]
    return _panel("stat", title, description, targets, unit, width=6, height=4,
                  defaults={"thresholds": {"mode": "absolute", "steps": steps}}, **extra)  # fmt: skip


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}}  # fmt: skip


def layout(panels: list[Panel]) -> list[Panel]:
    """Flow panels left to right, wrapping at 24 columns; rows start a new line."""
    x = y = line = 0
    for panel in panels:
        pos = panel["gridPos"]
        if panel["type"] == "row" or x + pos["w"] > 24:
            x, y = 0, y + line
            line = 0
        pos["x"], pos["y"] = x, y
        if panel["type"] == "row":
            y, line = y + 1, 0
            continue
        x += pos["w"]
        line = max(line, pos["h"])
    return panels


def variables(port: bool) -> list[dict[str, Any]]:
    def query(name: str, expr: str, label: str) -> dict[str, Any]:
        return {
            "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": expr, "refId": name}, "definition": expr, "refresh": 2,
            "multi": True, "includeAll": True, "allValue": ".*", "current": {}, "sort": 1,
        }  # fmt: skip

    found = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
        },
        query("instance", "label_values(synfin_build_info, instance)", "Host"),
        query("family", "label_values(synfin_tcp_state_transitions_total, family)", "IP family"),
    ]
    if port:
        found.append(
            query(
                "port", "label_values(synfin_tcp_connects_total, port)", "Port (with --port-label)"
            )
        )
    return found


def dashboard(
    uid: str, title: str, description: str, panels: list[Panel], port: bool = False
) -> dict[str, Any]:
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"}
        ],
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["synfin", "tcp", "ebpf"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": variables(port)},
        "annotations": {"list": []},
        "links": [],
        "panels": [panel | {"id": number} for number, panel in enumerate(layout(panels), start=1)],
    }
