"""The web view's hub (collector/web/hub.py) on recorded kernel streams: the arrows each
scenario takes, its two ends listed with how they opened and closed, the counts per state as
the engine believes them, the pages' filters, and every bound."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from synfin.engine.lifecycle import Engine
from synfin.engine.states import State
from synfin.lab.scenarios import SCENARIOS
from synfin.records.recording import Reader
from synfin.web.hub import BadFilter, Hub, PageFilter
from tests.paths import REPO
from tests.web_expectations import LISTENER_EDGES, expected_edges

RECORDINGS = sorted((REPO / "tests" / "fixtures" / "scenarios").glob("*.jsonl"))


def replayed(path: Path, hub: Hub | None = None) -> tuple[Hub, Engine]:
    hub = hub or Hub()
    with Reader(path) as reader:
        engine = Engine(reader.header.description)
        for event in reader:
            for output in engine.feed(event):
                hub.on_output(output)
    return hub, engine


def scenario_of(path: Path) -> str:
    return path.stem.rsplit("-", 1)[0]


@pytest.mark.parametrize("path", RECORDINGS, ids=[path.stem for path in RECORDINGS])
def test_the_diagram_counts_exactly_the_arrows_the_scenario_takes(path: Path) -> None:
    hub, _ = replayed(path)
    taken, inferable = expected_edges(SCENARIOS[scenario_of(path)])
    shown = {edge: counts for edge, counts in hub.edges.items() if edge not in LISTENER_EDGES}
    assert {edge: sum(counts) for edge, counts in shown.items()} == dict(taken)
    for edge, (_observed, inferred) in shown.items():
        assert inferred == 0 or edge in inferable, edge


@pytest.mark.parametrize("path", RECORDINGS, ids=[path.stem for path in RECORDINGS])
def test_both_ends_are_listed_with_how_they_opened_and_closed(path: Path) -> None:
    hub, _ = replayed(path)
    scenario = SCENARIOS[scenario_of(path)]
    listed = hub.snapshot(PageFilter())["connections"]
    expected = [end for end in (scenario.client, scenario.server) if end is not None]
    assert len(listed) == len(expected)  # the listener is not a connection
    by_open = {entry["opened"]: entry for entry in listed}  # type: ignore[index]
    for end in expected:
        entry = by_open[end.open]
        assert (entry["result"], entry["initiator"] or None, entry["closed"] or None) == (
            end.result, end.initiator, end.close,
        )  # fmt: skip
        assert entry["path"][: len(end.path)] == [state.value for state in end.path]


@pytest.mark.parametrize("path", RECORDINGS[:6], ids=[path.stem for path in RECORDINGS[:6]])
def test_the_counts_per_state_are_the_engines_belief(path: Path) -> None:
    hub, engine = replayed(path)
    believed: Counter[str] = Counter()
    for (_netns, state), count in engine.belief().items():
        if state is not State.CLOSED:
            believed[state.name] += count
    counts = hub.counts(PageFilter())
    assert {state: n for state, n in counts.items() if n} == dict(believed)


def test_a_port_filter_shows_only_connections_on_that_port() -> None:
    hub, _ = replayed(RECORDINGS[0])
    entries = hub.snapshot(PageFilter())["connections"]
    port = int(str(entries[0]["remote"]).rsplit(":", 1)[1])  # type: ignore[index]
    assert hub.snapshot(PageFilter.from_query(f"port={port}"))["connections"]
    assert hub.snapshot(PageFilter.from_query("port=1"))["connections"] == []
    assert set(hub.counts(PageFilter.from_query("port=1")).values()) == {0}


def test_a_state_filter_keeps_connections_that_passed_through_it() -> None:
    hub, _ = replayed(REPO / "tests/fixtures/scenarios/client-closes-ipv4.jsonl")
    through = hub.snapshot(PageFilter.from_query("state=time-wait"))["connections"]
    assert [entry["opened"] for entry in through] == ["active"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("colour=red", "unknown filter 'colour': use port, host or state"),
        ("port=0", "port '0' is not a number from 1 to 65535"),
        ("port=http", "port 'http' is not a number from 1 to 65535"),
        ("host=10.0.0.300", "10.0.0.300"),
        ("state=SLEEPING", "'SLEEPING' is not a TCP state"),
        ("port", "NAME=VALUE"),
    ],
)
def test_a_filter_synfin_cannot_apply_is_refused_with_what_to_send(
    query: str, message: str
) -> None:
    with pytest.raises(BadFilter, match=message.replace("(", r"\(").replace(".", r"\.")):
        PageFilter.from_query(query)


def test_a_page_gets_only_the_updates_its_filter_admits() -> None:
    hub = Hub()
    everything = hub.open_page(PageFilter())
    elsewhere = hub.open_page(PageFilter.from_query("port=1"))
    assert everything is not None and elsewhere is not None
    replayed(RECORDINGS[0], hub)
    assert everything.updates.qsize() > 0
    assert elsewhere.updates.qsize() == 0


def test_the_recent_list_is_bounded_and_keeps_the_newest() -> None:
    hub = Hub(recent_max=5)
    for path in RECORDINGS[:8]:
        replayed(path, hub)
    listed = hub.snapshot(PageFilter())["connections"]
    assert len(listed) == 5
    ids = [entry["id"] for entry in listed]  # type: ignore[index]
    assert ids == sorted(ids) and ids[-1] == max(ids)


def test_pages_beyond_the_limit_are_refused_and_a_closed_page_frees_its_place() -> None:
    hub = Hub(pages_max=2)
    first, second = hub.open_page(PageFilter()), hub.open_page(PageFilter())
    assert first is not None and second is not None
    assert hub.open_page(PageFilter()) is None
    hub.close_page(first)
    assert hub.open_page(PageFilter()) is not None


def test_a_page_that_reads_too_slowly_misses_updates_and_they_are_counted() -> None:
    hub = Hub(queue_max=3)
    page = hub.open_page(PageFilter())
    assert page is not None
    replayed(RECORDINGS[0], hub)
    assert page.updates.qsize() == 3
    assert page.missed > 0


def test_the_pages_own_connections_are_left_out() -> None:
    """Every ladder the page fetches is a connection to synfin web itself: shown, it would be
    a new ladder to fetch, and so on."""
    hub, _ = replayed(RECORDINGS[0])
    (server,) = [e for e in hub.snapshot(PageFilter())["connections"] if e["opened"] == "passive"]  # type: ignore[index]
    port = int(str(server["local"]).rsplit(":", 1)[1])  # the page's own port, as listening
    quiet, _ = replayed(RECORDINGS[0], Hub(own_port=port))
    assert quiet.snapshot(PageFilter())["connections"] == []
    assert quiet.edges.keys() <= LISTENER_EDGES


def test_only_connections_not_over_are_held_listeners_included() -> None:
    """A long run must not accumulate what is over: listeners end too, without a row."""
    hub = Hub()
    live = 0
    for path in RECORDINGS:
        _, engine = replayed(path, hub)
        live += sum(1 for connection in engine.live.values() if not connection.finished)
    assert hub.following == live
