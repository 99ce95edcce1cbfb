"""What the web view's diagram must show for a scenario: each arrow its two ends take, how
many times, and whether it may be inferred (tests/unit/test_web_hub.py on recordings,
tests/integration/test_web.py in a browser)."""

from __future__ import annotations

from collections import Counter

from synfin.engine.states import textbook_edge
from synfin.lab.scenarios import Scenario
from synfin.web.diagram import edge_id

# The scenario's listener opens and closes around it: not part of the connection's story.
LISTENER_EDGES = {"edge-CLOSED-LISTEN", "edge-LISTEN-CLOSED"}


def expected_edges(scenario: Scenario, runs: int = 1) -> tuple[Counter[str], set[str]]:
    """(times each arrow is taken, the arrows that may have been inferred)."""
    taken: Counter[str] = Counter()
    inferable: set[str] = set()
    for end in (scenario.client, scenario.server):
        if end is None:
            continue
        for source, target in zip(end.path, end.path[1:], strict=False):
            edge = textbook_edge(source, target)
            assert edge is not None, f"{source} -> {target} is not an arrow of the diagram"
            taken[edge_id(edge)] += runs
            if (source, target) in end.inferable:
                inferable.add(edge_id(edge))
    return taken, inferable
