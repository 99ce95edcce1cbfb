"""The textbook state model: every kernel state has a documented name; unknowns are safe."""

from __future__ import annotations

import collections
import itertools
import re
from pathlib import Path

import pytest

from synfin.engine.states import (
    ACTIVE_OPEN_ACTIVE_CLOSE,
    DOCUMENTED_STATES,
    KERNEL_TO_DOCUMENTED,
    NEXT_STATE,
    ON_CLOSE,
    ON_CONNECT,
    PASSIVE_OPEN_PASSIVE_CLOSE,
    TEXTBOOK_EDGES,
    By,
    Call,
    Edge,
    KernelState,
    State,
    TextbookSegment,
    Trigger,
    _by_trigger,
    documented,
    kernel_state_name,
    next_state,
    received,
    sent,
    textbook_edge,
)
from synfin.engine.states_doc import (
    GENERATED_BEGIN,
    GENERATED_END,
    MEANING,
    main,
    markdown,
    with_generated_part,
)
from synfin.ladder import peer_states

DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "states.md"
REGENERATE = ".venv/bin/python -m synfin.engine.states_doc docs/states.md"
T = TextbookSegment


def test_every_kernel_state_has_a_documented_state() -> None:
    assert set(KERNEL_TO_DOCUMENTED) == set(KernelState)


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        (1, State.ESTABLISHED),
        (2, State.SYN_SENT),
        (3, State.SYN_RCVD),
        (4, State.FIN_WAIT_1),
        (5, State.FIN_WAIT_2),
        (6, State.TIME_WAIT),
        (7, State.CLOSED),
        (8, State.CLOSE_WAIT),
        (9, State.LAST_ACK),
        (10, State.LISTEN),
        (11, State.CLOSING),
        (12, State.SYN_RCVD),  # the listener's request socket is the textbook's SYN-RCVD
        (13, State.CLOSED),
    ],
)
def test_kernel_values_map_to_the_documented_states(kernel: int, expected: State) -> None:
    assert documented(kernel) is expected


@pytest.mark.parametrize("value", [0, 14, 15, 255, -1, 1 << 31])
def test_unknown_kernel_values_decode_to_unknown(value: int) -> None:
    assert documented(value) is State.UNKNOWN
    assert kernel_state_name(value) == f"unknown:{value}"


def test_kernel_state_names_are_the_kernels() -> None:
    assert kernel_state_name(12) == "TCP_NEW_SYN_RECV"
    assert kernel_state_name(4) == "TCP_FIN_WAIT1"


def test_documented_names_and_labels() -> None:
    names = {state.value for state in State} - {"unknown"}
    assert names == {
        "CLOSED", "LISTEN", "SYN-SENT", "SYN-RCVD", "ESTABLISHED", "FIN-WAIT-1",
        "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT",
    }  # fmt: skip
    for state in State:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", state.label), state
    assert State.FIN_WAIT_1.label == "fin_wait_1"


@pytest.mark.parametrize("path", [ACTIVE_OPEN_ACTIVE_CLOSE, PASSIVE_OPEN_PASSIVE_CLOSE])
def test_documented_paths_follow_the_diagram(path: tuple[State, ...]) -> None:
    for source, target in itertools.pairwise(path):
        assert textbook_edge(source, target) is not None, (source, target)


def test_the_diagram_has_no_duplicate_or_impossible_edges() -> None:
    pairs = [(edge.source, edge.target) for edge in TEXTBOOK_EDGES]
    assert len(pairs) == len(set(pairs))
    assert textbook_edge(State.CLOSED, State.ESTABLISHED) is None
    assert textbook_edge(State.TIME_WAIT, State.ESTABLISHED) is None
    assert all(State.UNKNOWN not in pair for pair in pairs)


def test_the_handshake_edges_carry_the_seq_ack_arithmetic() -> None:
    assert textbook_edge(State.CLOSED, State.SYN_SENT).sends == "SYN seq=x"
    assert textbook_edge(State.LISTEN, State.SYN_RCVD).sends == "SYN+ACK seq=y ack=x+1"
    assert textbook_edge(State.SYN_SENT, State.ESTABLISHED).sends == "ACK seq=x+1 ack=y+1"


def test_every_edge_has_a_trigger_and_moves() -> None:
    for edge in TEXTBOOK_EDGES:
        assert edge.triggers, edge
        assert len(edge.triggers) == len(set(edge.triggers)), edge
        assert edge.source is not edge.target, edge


def test_no_state_has_one_trigger_leading_two_ways() -> None:
    targets: dict[tuple[State, Trigger], set[State]] = collections.defaultdict(set)
    for edge in TEXTBOOK_EDGES:
        for trigger in edge.triggers:
            targets[(edge.source, trigger)].add(edge.target)
    assert {key: found for key, found in targets.items() if len(found) > 1} == {}
    assert {key: found.pop() for key, found in targets.items()} == dict(NEXT_STATE)


def test_a_table_with_a_trigger_leading_two_ways_is_refused() -> None:
    crossed = (
        Edge(State.FIN_WAIT_1, State.CLOSING, "FIN received", "ACK", (received(T.FIN),)),
        Edge(State.FIN_WAIT_1, State.TIME_WAIT, "FIN received", "ACK", (received(T.FIN),)),
    )
    with pytest.raises(
        ValueError, match="FIN-WAIT-1 on received FIN goes to CLOSING and TIME-WAIT"
    ):
        _by_trigger(crossed)


@pytest.mark.parametrize(
    ("by", "what"),
    [
        (By.APPLICATION, T.FIN),
        (By.SENT, Call.CLOSE),
        (By.RECEIVED, T.TIMEOUT),
        (By.TIMER, T.RST),
        (By.TIMER, Call.CLOSE),
    ],
)
def test_a_trigger_names_a_call_a_segment_or_a_timeout_by_who_acts(
    by: By, what: Call | TextbookSegment
) -> None:
    with pytest.raises(ValueError, match="cannot be"):
        Trigger(by, what)


def test_a_call_that_sends_a_segment_lists_it_as_sent() -> None:
    for edge in TEXTBOOK_EDGES:
        if ON_CLOSE in edge.triggers or ON_CONNECT in edge.triggers:
            first_word = edge.sends.split(" ")[0]
            if first_word:
                assert sent(T(first_word)) in edge.triggers, edge


@pytest.mark.parametrize(
    ("source", "trigger", "target"),
    [
        (State.ESTABLISHED, sent(T.FIN), State.FIN_WAIT_1),
        (State.ESTABLISHED, received(T.FIN), State.CLOSE_WAIT),
        (State.FIN_WAIT_1, received(T.FIN), State.CLOSING),  # the FINs crossed
        (State.FIN_WAIT_1, received(T.FIN_ACK), State.TIME_WAIT),
        (State.FIN_WAIT_2, received(T.FIN_ACK), State.TIME_WAIT),
        (State.CLOSING, received(T.ACK_OF_FIN), State.TIME_WAIT),
        (State.CLOSE_WAIT, ON_CLOSE, State.LAST_ACK),
        (State.TIME_WAIT, Trigger(By.TIMER, T.TIMEOUT), State.CLOSED),
        (State.LISTEN, received(T.RST), None),
        (State.SYN_SENT, sent(T.RST), None),
        (State.CLOSED, received(T.FIN), None),
    ],
)
def test_next_state_follows_the_diagram(
    source: State, trigger: Trigger, target: State | None
) -> None:
    assert next_state(source, trigger) is target


def _reachable(start: State, forward: bool) -> set[State]:
    seen, todo = {start}, [start]
    while todo:
        state = todo.pop()
        for edge in TEXTBOOK_EDGES:
            here, there = (edge.source, edge.target) if forward else (edge.target, edge.source)
            if here is state and there not in seen:
                seen.add(there)
                todo.append(there)
    return seen


def test_every_documented_state_is_reachable_from_closed_and_leads_back() -> None:
    assert set(DOCUMENTED_STATES) == set(State) - {State.UNKNOWN}
    assert _reachable(State.CLOSED, forward=True) == set(DOCUMENTED_STATES)
    assert _reachable(State.CLOSED, forward=False) == set(DOCUMENTED_STATES)


def test_every_documented_state_is_explained() -> None:
    assert set(MEANING) == set(DOCUMENTED_STATES)


def test_the_peer_state_lookup_is_the_tables_segment_triggers() -> None:
    expected = {
        (edge.source, trigger.by.value, trigger.what): edge.target
        for edge in TEXTBOOK_EDGES
        for trigger in edge.triggers
        if trigger.by in (By.SENT, By.RECEIVED)
    }
    assert dict(peer_states.TRANSITIONS) == expected


def test_the_docs_page_is_generated_from_the_table() -> None:
    page = DOCS_PAGE.read_text()
    assert with_generated_part(page) == page, f"docs/states.md is stale: run {REGENERATE}"
    for edge in TEXTBOOK_EDGES:
        assert f"| {edge.source} | {edge.target} | {edge.cause} |" in page


def test_the_entry_point_prints_or_rewrites_the_tables(tmp_path, capsys) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out == markdown()
    page = tmp_path / "states.md"
    page.write_text(f"# prose\n\n{GENERATED_BEGIN}\nold\n{GENERATED_END}\nmore prose\n")
    assert main([str(page)]) == 0
    assert page.read_text() == (
        f"# prose\n\n{GENERATED_BEGIN}\n{markdown()}{GENERATED_END}\nmore prose\n"
    )
    page.write_text("no markers\n")
    assert main([str(page)]) == 1
    assert "cannot regenerate" in capsys.readouterr().err
    assert page.read_text() == "no markers\n"
