"""The textbook's state diagram as SVG, drawn from the engine's table of edges.

Every documented state is a box and every edge of ``TEXTBOOK_EDGES`` one path, with ids the
page's script lights up (``state-SYN_SENT``, ``edge-CLOSED-SYN_SENT``). CLOSED is drawn twice,
as the textbook figures do: where connections begin (top) and where they end (bottom), so the
many ways back to CLOSED do not cross the handshake. Edges that only abort (an RST, a close
before the handshake, a timeout) run along the margins to the bottom CLOSED.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from synfin.engine.states import TEXTBOOK_EDGES, Edge, State

WIDTH, HEIGHT = 960, 800
BOX_W, BOX_H = 150, 46
END = "end"  # the bottom CLOSED's suffix


@dataclass(frozen=True)
class Node:
    id: str
    state: State
    x: int  # centre
    y: int

    @property
    def left(self) -> float:
        return self.x - BOX_W / 2

    @property
    def right(self) -> float:
        return self.x + BOX_W / 2

    @property
    def top(self) -> float:
        return self.y - BOX_H / 2

    @property
    def bottom(self) -> float:
        return self.y + BOX_H / 2


S = State
# The passive (server) side on the left, the active (client) side on the right, the active
# closer on the left and the passive closer on the right, as RFC 9293's figure.
NODES: tuple[Node, ...] = (
    Node("state-CLOSED", S.CLOSED, 480, 40),
    Node("state-LISTEN", S.LISTEN, 300, 140),
    Node("state-SYN_RCVD", S.SYN_RCVD, 300, 250),
    Node("state-SYN_SENT", S.SYN_SENT, 660, 250),
    Node("state-ESTABLISHED", S.ESTABLISHED, 480, 360),
    Node("state-FIN_WAIT_1", S.FIN_WAIT_1, 300, 470),
    Node("state-CLOSE_WAIT", S.CLOSE_WAIT, 660, 470),
    Node("state-FIN_WAIT_2", S.FIN_WAIT_2, 300, 580),
    Node("state-CLOSING", S.CLOSING, 480, 580),
    Node("state-LAST_ACK", S.LAST_ACK, 660, 580),
    Node("state-TIME_WAIT", S.TIME_WAIT, 390, 680),
    Node(f"state-CLOSED-{END}", S.CLOSED, 660, 760),
)
_START = {node.state: node for node in NODES if not node.id.endswith(END)}
_END_CLOSED = NODES[-1]


def edge_id(edge: Edge) -> str:
    return f"edge-{edge.source.name}-{edge.target.name}"


def node_of(state: State, *, as_target: bool) -> Node:
    """The box an edge starts from or ends at: arrows into CLOSED end at the bottom one."""
    if state is S.CLOSED and as_target:
        return _END_CLOSED
    return _START[state]


def is_abort(edge: Edge) -> bool:
    """An edge to CLOSED other than the two that end an orderly close."""
    return edge.target is S.CLOSED and edge.source not in (S.LAST_ACK, S.TIME_WAIT)


def _border_point(node: Node, toward_x: float, toward_y: float) -> tuple[float, float]:
    """Where the line from the node's centre toward a point leaves its box."""
    dx, dy = toward_x - node.x, toward_y - node.y
    if dx == 0 and dy == 0:
        return node.x, node.y
    scale = min(
        (BOX_W / 2) / abs(dx) if dx else float("inf"),
        (BOX_H / 2) / abs(dy) if dy else float("inf"),
    )
    return node.x + dx * scale, node.y + dy * scale


def abort_side(source: Node) -> str:
    """The margin an abort edge runs along: the right one only from the client's column."""
    return "right" if source.x > WIDTH / 2 else "left"


def _abort_path(source: Node, lane: int) -> str:
    """From the source's outer side along a margin lane, into the bottom CLOSED."""
    y_in = _END_CLOSED.y + 12 - 4 * lane
    if abort_side(source) == "left":
        margin, start_x, end_x = 40 + 14 * lane, source.left, _END_CLOSED.left
    else:
        margin, start_x, end_x = WIDTH - 40 - 14 * lane, source.right, _END_CLOSED.right
    return f"M{start_x:.0f},{source.y} H{margin} V{y_in} H{end_x:.0f}"


def edge_path(edge: Edge, lane: int = 0) -> str:
    source, target = node_of(edge.source, as_target=False), node_of(edge.target, as_target=True)
    if is_abort(edge):
        return _abort_path(source, lane)
    x1, y1 = _border_point(source, target.x, target.y)
    x2, y2 = _border_point(target, source.x, source.y)
    return f"M{x1:.0f},{y1:.0f} L{x2:.0f},{y2:.0f}"


def _lanes() -> dict[Edge, int]:
    """Each abort edge's margin lane: one per edge on its side, so none overlap."""
    lanes: dict[Edge, int] = {}
    taken = {"left": 0, "right": 0}
    for edge in TEXTBOOK_EDGES:
        if is_abort(edge):
            side = abort_side(node_of(edge.source, as_target=False))
            lanes[edge] = taken[side]
            taken[side] += 1
    return lanes


LANES = _lanes()


def svg() -> str:
    """The whole diagram: arrows first (under the boxes), then the boxes with a count each."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="diagram" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'role="img" aria-label="The TCP state diagram">',
        "<defs>"
        # In the drawing's units: a lit (thicker) arrow keeps the same head.
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="10" '
        'markerHeight="10" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>",
    ]
    for edge in TEXTBOOK_EDGES:
        kind = "edge abort" if is_abort(edge) else "edge"
        title = escape(f"{edge.source} -> {edge.target}: {edge.cause}" +
                       (f" / sends {edge.sends}" if edge.sends else ""))  # fmt: skip
        parts.append(
            f'<path id="{edge_id(edge)}" class="{kind}" d="{edge_path(edge, LANES.get(edge, 0))}" '
            f'marker-end="url(#arrow)"><title>{title}</title></path>'
        )
    for node in NODES:
        name = escape(node.state.value)
        parts.append(
            f'<g id="{node.id}" class="state" data-state="{node.state.name}">'
            f'<rect x="{node.left:.0f}" y="{node.top:.0f}" width="{BOX_W}" height="{BOX_H}" '
            f'rx="8"/><text class="name" x="{node.x}" y="{node.y - 4}">{name}</text>'
            f'<text class="count" x="{node.x}" y="{node.y + 15}"></text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
