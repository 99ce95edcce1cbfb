"""Decoding probe records: layout, addresses, unknown values, and a recorded real stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.events import (
    AF_INET,
    AF_INET6,
    EVENT_FLAG_PROCESS_CONTEXT,
    EVENT_SIZE,
    DecodeError,
    StateChange,
    decode,
    encode,
    pack_address,
)
from collector.states import State

FIXTURES = Path(__file__).parent / "fixtures"


def make_event(**overrides: object) -> StateChange:
    family, saddr = pack_address(str(overrides.pop("local", "192.0.2.1")))
    _, daddr = pack_address(str(overrides.pop("remote", "192.0.2.2")))
    fields: dict[str, object] = {
        "ts_ns": 2_000_000,
        "skaddr": 0xFFFF888012345678,
        "since_ns": 1_000_000,
        "pid": 4242,
        "tid": 4243,
        "family": family,
        "sport": 43210,
        "dport": 80,
        "flags": EVENT_FLAG_PROCESS_CONTEXT,
        "saddr": saddr,
        "daddr": daddr,
        "comm": "curl",
        "oldstate": 1,
        "newstate": 4,
    }
    fields.update(overrides)
    return StateChange(**fields)  # type: ignore[arg-type]


def test_layout_is_96_bytes() -> None:
    # struct synfin_event in probes/synfin_events.h; the integration tests check the kernel's
    # records have this size.
    assert EVENT_SIZE == 96


def test_round_trip() -> None:
    event = make_event()
    assert decode(encode(event)) == event


def test_ipv4_is_shown_from_its_v4_mapped_form() -> None:
    event = make_event()
    assert event.family == AF_INET
    assert event.local == "192.0.2.1:43210"
    assert event.remote == "192.0.2.2:80"


def test_ipv6_endpoints_are_bracketed() -> None:
    event = make_event(local="2001:db8::1", remote="2001:db8::2")
    assert event.family == AF_INET6
    assert event.local == "[2001:db8::1]:43210"
    assert event.to_dict()["remote_address"] == "2001:db8::2"


def test_states_are_documented_names() -> None:
    event = make_event(oldstate=1, newstate=4)
    assert (event.old, event.new) == (State.ESTABLISHED, State.FIN_WAIT_1)
    record = event.to_dict()
    assert record["old_state"] == "ESTABLISHED"
    assert record["new_kernel_state"] == "TCP_FIN_WAIT1"


def test_unknown_kernel_state_is_unknown_not_an_error() -> None:
    event = decode(encode(make_event(newstate=200)))
    assert event.new is State.UNKNOWN
    assert event.to_dict()["new_kernel_state"] == "unknown:200"


def test_time_in_old_state_is_none_when_not_seen() -> None:
    assert make_event(since_ns=0).time_in_old_state_ns is None
    assert make_event(since_ns=3_000_000, ts_ns=2_000_000).time_in_old_state_ns is None
    assert make_event().time_in_old_state_ns == 1_000_000


def test_process_only_in_process_context() -> None:
    softirq = make_event(flags=0, pid=77, comm="ksoftirqd/0")
    assert softirq.to_dict()["pid"] is None
    assert softirq.to_dict()["comm"] is None
    assert make_event().to_dict()["pid"] == 4242


def test_short_record_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="expected 96"):
        decode(b"\0" * 40)


def test_unknown_kind_is_a_decode_error() -> None:
    record = bytearray(encode(make_event()))
    record[38] = 99  # the kind byte
    with pytest.raises(DecodeError, match="kind 99"):
        decode(bytes(record))


def load_recorded(name: str) -> list[StateChange]:
    lines = (FIXTURES / name).read_text().split()
    return [decode(bytes.fromhex(line)) for line in lines]


def test_recorded_loopback_connection_decodes_to_both_documented_paths() -> None:
    # Raw records captured from this kernel (6.18) for one loopback connection to port 8099,
    # client closing first: see tests/fixtures/README.md.
    events = load_recorded("loopback_client_closes.records")
    paths: dict[int, list[State]] = {}
    for event in events:
        paths.setdefault(event.skaddr, [event.old]).append(event.new)
    assert sorted(paths.values(), key=len) == sorted(
        [
            [State.CLOSED, State.LISTEN, State.CLOSED],
            [
                State.CLOSED,
                State.SYN_SENT,
                State.ESTABLISHED,
                State.FIN_WAIT_1,
                State.FIN_WAIT_2,
                State.CLOSED,
            ],
            [
                State.LISTEN,
                State.SYN_RCVD,
                State.ESTABLISHED,
                State.CLOSE_WAIT,
                State.LAST_ACK,
                State.CLOSED,
            ],
        ],
        key=len,
    )
    child = next(e for e in events if e.old is State.LISTEN and e.new is State.SYN_RCVD)
    assert not child.in_process_context  # created in softirq at the third ACK
    assert child.sport == 8099
