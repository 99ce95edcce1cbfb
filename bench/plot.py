"""A small SVG line chart: throughput relative to nothing attached, against concurrency.

Hand-written SVG rather than matplotlib: the benchmark then needs nothing beyond the
standard library, and the chart is a handful of polylines.
"""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 60, 150, 30, 50
COLOURS = {
    "none": "#888888",
    "run": "#1f77b4",
    "watch": "#ff7f0e",
    "trace-none": "#2ca02c",
    "trace-all": "#9467bd",
    "tcpstates": "#d62728",
}


def line_chart(curves: dict[str, dict[int, float]]) -> str:
    """One line per configuration; x is concurrency (evenly spaced levels), y the ratio."""
    top = max([1.1] + [ratio + 0.1 for points in curves.values() for ratio in points.values()])
    levels = sorted({level for points in curves.values() for level in points})
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(level: int) -> float:
        return LEFT + plot_w * (levels.index(level) / max(1, len(levels) - 1))

    def y(ratio: float) -> float:
        return TOP + plot_h * (1 - ratio / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="18" font-size="14">Throughput vs. nothing attached</text>',
    ]
    for tick in [step / 5 for step in range(int(top * 5) + 1)]:
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            'stroke="#dddddd"/>'
            f'<text x="{LEFT - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.1f}</text>'
        )
    for level in levels:
        parts.append(
            f'<text x="{x(level):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{level}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 10}" text-anchor="middle">'
        "ab concurrency (connections in flight)</text>"
    )
    for row, (config, points) in enumerate(sorted(curves.items())):
        colour = COLOURS.get(config, "#2ca02c")
        path = " ".join(f"{x(level):.1f},{y(ratio):.1f}" for level, ratio in sorted(points.items()))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for level, ratio in points.items():
            parts.append(f'<circle cx="{x(level):.1f}" cy="{y(ratio):.1f}" r="3" fill="{colour}"/>')
        legend_y = TOP + 20 * row
        parts.append(
            f'<line x1="{WIDTH - RIGHT + 15}" x2="{WIDTH - RIGHT + 35}" y1="{legend_y}" '
            f'y2="{legend_y}" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{WIDTH - RIGHT + 40}" y="{legend_y + 4}">{escape(config)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
