"""The textbook's state diagram as a Grafana canvas panel: each documented state a box with
the number of connections in it now, each arrow a transition with its rate beside it.

The layout follows the usual drawing: opening at the top (the client's path on the right,
the server's on the left), ESTABLISHED in the middle, the active close down the left, the
passive close down the right.
"""

from __future__ import annotations

from typing import Any

from widgets import FAM, RATE, Panel, _panel

# state label -> (title, left, top) on an 1100 x 640 canvas
STATES: dict[str, tuple[str, int, int]] = {
    "closed": ("CLOSED", 470, 10),
    "listen": ("LISTEN", 150, 100),
    "syn_sent": ("SYN-SENT", 790, 100),
    "syn_rcvd": ("SYN-RCVD", 150, 200),
    "established": ("ESTABLISHED", 470, 290),
    "fin_wait_1": ("FIN-WAIT-1", 150, 380),
    "close_wait": ("CLOSE-WAIT", 790, 380),
    "fin_wait_2": ("FIN-WAIT-2", 30, 480),
    "closing": ("CLOSING", 290, 480),
    "last_ack": ("LAST-ACK", 790, 480),
    "time_wait": ("TIME-WAIT", 150, 570),
}
# The diagram's arrows (documented transitions synfin counts).
EDGES: list[tuple[str, str]] = [
    ("closed", "listen"),
    ("closed", "syn_sent"),
    ("listen", "syn_rcvd"),
    ("syn_sent", "established"),
    ("syn_rcvd", "established"),
    ("established", "fin_wait_1"),
    ("established", "close_wait"),
    ("fin_wait_1", "fin_wait_2"),
    ("fin_wait_1", "closing"),
    ("fin_wait_2", "time_wait"),
    ("closing", "time_wait"),
    ("close_wait", "last_ack"),
    ("last_ack", "closed"),
    ("time_wait", "closed"),
]
BOX_W, BOX_H = 140, 52


def _count_field(state: str) -> str:
    return state


def _rate_field(source: str, target: str) -> str:
    return f"{source} → {target}"


def _box(state: str, title: str, left: int, top: int) -> dict[str, Any]:
    connections = [
        {
            "source": {"x": 0, "y": -1},
            "target": {"x": 0, "y": 1},
            "targetName": STATES[target][0],
            "color": {"fixed": "#8e8e8e"},
            "size": {"fixed": 2, "min": 1, "max": 10},
            "path": "straight",
        }
        for source, target in EDGES
        if source == state
    ]
    return {
        "type": "metric-value",
        "name": title,
        "config": {
            # Template mode: the state's name over its count (the field of that name).
            "text": {"mode": "template", "fixed": f"{title}\n${{{_count_field(state)}}}"},
            "color": {"fixed": "#ffffff"},
            "size": 16,
            "align": "center",
            "valign": "middle",
        },
        "background": {"color": {"fixed": "#1f60c4" if state != "established" else "#37872d"}},
        "border": {"color": {"fixed": "#0a2c5c"}, "width": 1},
        "placement": {"left": left, "top": top, "width": BOX_W, "height": BOX_H},
        "constraint": {"horizontal": "left", "vertical": "top"},
        "connections": connections,
    }


def _rate_label(source: str, target: str) -> dict[str, Any]:
    _, x1, y1 = STATES[source]
    _, x2, y2 = STATES[target]
    return {
        "type": "metric-value",
        "name": _rate_field(source, target),
        "config": {
            "text": {"mode": "field", "fixed": "", "field": _rate_field(source, target)},
            "color": {"fixed": "#d8d9da"},
            "size": 11,
            "align": "center",
            "valign": "middle",
        },
        "background": {"color": {"fixed": "transparent"}},
        "border": {"color": {"fixed": "transparent"}, "width": 0},
        "placement": {
            "left": (x1 + x2) // 2 + BOX_W // 2 + 6,
            "top": (y1 + y2) // 2 + BOX_H // 2 - 10,
            "width": 80,
            "height": 20,
        },
        "constraint": {"horizontal": "left", "vertical": "top"},
    }


def diagram_panel() -> Panel:
    counts = [
        (f'sum(synfin_tcp_connections{{{FAM},state="{state}"}})', _count_field(state))
        for state in STATES
    ]
    rates = [
        (
            f'sum(rate(synfin_tcp_state_transitions_total{{{FAM},from="{source}",to="{target}"}}[{RATE}]))',
            _rate_field(source, target),
        )
        for source, target in EDGES
    ]
    elements = [_box(state, *placed) for state, placed in STATES.items()]
    elements += [_rate_label(source, target) for source, target in EDGES]
    overrides = [
        {
            "matcher": {"id": "byName", "options": _rate_field(source, target)},
            "properties": [{"id": "unit", "value": "suffix:/s"}, {"id": "decimals", "value": 1}],
        }
        for source, target in EDGES
    ]
    panel = _panel(
        "canvas",
        "The state diagram, live",
        "Each box is a documented TCP state with the number of connections synfin follows in it "
        "now; each arrow a transition, with its rate per second beside it. Steps the kernel does "
        "not show (TIME-WAIT's start after an orphaned close) are counted when synfin infers "
        "them. See docs/metrics.md.",
        [*counts, *rates],
        "short",
        width=24,
        height=18,
        options={
            "inlineEditing": False,
            "showAdvancedTypes": True,
            "root": {
                "type": "frame",
                "name": "diagram",
                "elements": elements,
                "background": {"color": {"fixed": "transparent"}},
                "border": {"color": {"fixed": "transparent"}},
                "constraint": {"horizontal": "left", "vertical": "top"},
                "placement": {"left": 0, "top": 0, "width": 1100, "height": 640},
            },
        },
    )
    panel["fieldConfig"]["overrides"] = overrides
    for target in panel["targets"]:
        target["instant"] = False
    return panel
