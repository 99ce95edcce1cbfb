"""The web view's state diagram (collector/web/diagram.py): drawn from the engine's table of
edges, every state a box and every edge one arrow, nothing overlapping."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET

from synfin.engine.states import DOCUMENTED_STATES, TEXTBOOK_EDGES, State
from synfin.web import diagram

SVG = "{http://www.w3.org/2000/svg}"


def parsed() -> ET.Element:
    return ET.fromstring(diagram.svg())


def test_every_documented_state_has_a_box_and_closed_has_two() -> None:
    boxes = [g.get("data-state") for g in parsed().iter(f"{SVG}g") if g.get("class") == "state"]
    assert sorted(boxes) == sorted([s.name for s in DOCUMENTED_STATES] + [State.CLOSED.name])


def test_every_edge_of_the_table_is_one_arrow_and_there_are_no_others() -> None:
    arrows = [p.get("id") for p in parsed().iter(f"{SVG}path") if "edge" in (p.get("class") or "")]
    assert sorted(arrows) == sorted(diagram.edge_id(edge) for edge in TEXTBOOK_EDGES)
    assert len(set(arrows)) == len(arrows)


def test_ids_are_unique() -> None:
    ids = [element.get("id") for element in parsed().iter() if element.get("id")]
    assert len(ids) == len(set(ids))


def test_no_two_boxes_overlap_and_all_fit() -> None:
    for one, other in itertools.combinations(diagram.NODES, 2):
        apart = (one.right <= other.left or other.right <= one.left or
                 one.bottom <= other.top or other.bottom <= one.top)  # fmt: skip
        assert apart, (one.id, other.id)
    for node in diagram.NODES:
        assert node.left >= 0 and node.right <= diagram.WIDTH
        assert node.top >= 0 and node.bottom <= diagram.HEIGHT


def on_border(node: diagram.Node, x: float, y: float) -> bool:
    inside = node.left - 1 <= x <= node.right + 1 and node.top - 1 <= y <= node.bottom + 1
    edge = min(abs(x - node.left), abs(x - node.right), abs(y - node.top), abs(y - node.bottom))
    return inside and edge <= 1


def test_each_arrow_leaves_its_source_box_and_ends_on_its_target_box() -> None:
    for edge in TEXTBOOK_EDGES:
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", diagram.edge_path(edge))]
        source = diagram.node_of(edge.source, as_target=False)
        target = diagram.node_of(edge.target, as_target=True)
        assert on_border(source, numbers[0], numbers[1]), edge
        end = diagram.edge_path(edge, diagram.LANES.get(edge, 0))
        last = re.findall(r"[MLHV][^MLHV]*", end)[-1]
        assert last[0] in "LH", end
        if last[0] == "H":
            assert float(last[1:]) in (target.left, target.right), edge
        else:
            x, y = (float(n) for n in last[1:].split(","))
            assert on_border(target, x, y), edge


def test_arrows_into_closed_from_the_two_orderly_ends_are_not_aborts() -> None:
    aborts = {(e.source, e.target) for e in TEXTBOOK_EDGES if diagram.is_abort(e)}
    assert (State.LAST_ACK, State.CLOSED) not in aborts
    assert (State.TIME_WAIT, State.CLOSED) not in aborts
    assert (State.ESTABLISHED, State.CLOSED) in aborts


def test_abort_arrows_each_run_in_a_lane_of_their_own() -> None:
    by_side: dict[str, list[int]] = {}
    for edge, lane in diagram.LANES.items():
        side = diagram.abort_side(diagram.node_of(edge.source, as_target=False))
        by_side.setdefault(side, []).append(lane)
    for lanes in by_side.values():
        assert sorted(lanes) == list(range(len(lanes)))
