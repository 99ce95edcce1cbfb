"""`--host` and `--state`: which of the engine's lines a view shows, pinned on recorded kernel
event streams (tests/fixtures/scenarios) and, in test_cli.py, on a live connection."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from synfin.cli.main import main
from synfin.engine.states import State
from synfin.records.addresses import parse_network
from synfin.views.filters import parse_state
from tests.paths import FIXTURES

FIXTURES = FIXTURES / "scenarios"


def replay(name: str, *flags: str) -> list[dict[str, object]]:
    result = CliRunner().invoke(main, ["replay", "--json", str(FIXTURES / name), *flags])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_state_names_are_read_in_any_spelling() -> None:
    assert parse_state("time-wait") is parse_state("TIME_WAIT") is State.TIME_WAIT
    with pytest.raises(ValueError, match="not a TCP state"):
        parse_state("unknown")  # the engine's placeholder is not a state a person asks for


def test_a_bare_address_is_one_host() -> None:
    assert parse_network("192.0.2.7").num_addresses == 1
    assert parse_network("2001:db8::1/32").prefixlen == 32  # host bits allowed, as people write


def test_state_filter_keeps_only_steps_touching_the_state() -> None:
    everything = replay("client-closes-ipv4.jsonl")
    kept = replay("client-closes-ipv4.jsonl", "--state", "FIN-WAIT-2")
    steps = [r for r in kept if r["type"] == "step"]
    assert [(r["from"], r["to"]) for r in steps] == [
        ("FIN-WAIT-1", "FIN-WAIT-2"),
        ("FIN-WAIT-2", "TIME-WAIT"),
    ]
    # Only the client passed through FIN-WAIT-2: its verdict stays, the server's goes.
    assert [r["open"] for r in kept if r["type"] == "classified"] == ["active"]
    assert len(kept) < len(everything)


def test_host_filter_matches_either_end_by_address_or_network() -> None:
    everything = replay("client-closes-ipv6.jsonl")
    assert replay("client-closes-ipv6.jsonl", "--host", "2001:db8::/32") == everything
    # The client's address is one end of every line but the listener's (remote [::]:0).
    client_lines = [r for r in everything if "[2001:db8::1]" in f"{r['local']} {r['remote']}"]
    assert 0 < len(client_lines) < len(everything)
    assert replay("client-closes-ipv6.jsonl", "--host", "2001:db8::1") == client_lines
    assert replay("client-closes-ipv6.jsonl", "--host", "10.0.0.0/8") == []
    assert replay("client-closes-ipv4.jsonl", "--host", "192.0.2.0/24", "--host", "10.0.0.0/8")


def test_filters_combine_and_leave_the_engine_whole() -> None:
    kept = replay("client-closes-ipv4.jsonl", "--host", "192.0.2.1", "--state", "TIME-WAIT")
    (step,) = [r for r in kept if r["type"] == "step"]
    # Its time in FIN-WAIT-2 is known although that step's own line was filtered out.
    assert step["to"] == "TIME-WAIT" and step["time_in_from_s"] is not None
