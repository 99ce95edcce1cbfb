"""The textbook state model: every kernel state has a documented name; unknowns are safe."""

from __future__ import annotations

import itertools
import re

import pytest

from synfin.engine.states import (
    ACTIVE_OPEN_ACTIVE_CLOSE,
    KERNEL_TO_DOCUMENTED,
    PASSIVE_OPEN_PASSIVE_CLOSE,
    TEXTBOOK_EDGES,
    KernelState,
    State,
    documented,
    kernel_state_name,
    textbook_edge,
)


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
