"""Decoding probe records and recordings: layout, addresses, unknown values, bad input."""

from __future__ import annotations

import pytest

from synfin.engine.states import State, documented
from synfin.records.addresses import AF_INET, AF_INET6, pack_address
from synfin.records.events import (
    EVENT_SIZE,
    FLAG_PROCESS_CONTEXT,
    KIND_OFFSET,
    DecodeError,
    Event,
    EventKind,
    Fact,
    decode,
    encode,
    from_record,
)


def make_event(**overrides: object) -> Event:
    family, saddr = pack_address(str(overrides.pop("local", "192.0.2.1")))
    _, daddr = pack_address(str(overrides.pop("remote", "192.0.2.2")))
    fields: dict[str, object] = {
        "kind": EventKind.STATE_CHANGE,
        "ts_ns": 2_000_000,
        "skaddr": 0xFFFF888012345678,
        "since_ns": 1_000_000,
        "start_ns": 500_000,
        "aux": 0,
        "cgroup_id": 7,
        "pid": 4242,
        "owner_pid": 4242,
        "netns": 4026531840,
        "facts": Fact.ACTIVE_OPEN | Fact.ESTABLISHED,
        "family": family,
        "sport": 43210,
        "dport": 80,
        "flags": FLAG_PROCESS_CONTEXT,
        "saddr": saddr,
        "daddr": daddr,
        "comm": "curl",
        "oldstate": 1,
        "newstate": 4,
        "detail": 0,
        "syn_retrans": 0,
        "reason": 0,
    }
    fields.update(overrides)
    return Event(**fields)  # type: ignore[arg-type]


def test_layout_is_128_bytes() -> None:
    # struct synfin_event in probes/synfin_events.h; test_probe_netns checks the kernel's
    # records have this size and decode to the sockets that made them.
    assert EVENT_SIZE == 128
    assert encode(make_event())[KIND_OFFSET] == EventKind.STATE_CHANGE


def test_round_trip_through_bytes_and_records() -> None:
    event = make_event(kind=EventKind.TIMEWAIT_END, detail=6, reason=11)
    assert decode(encode(event)) == event
    assert from_record(event.to_record()) == event


def test_ipv4_is_shown_from_its_v4_mapped_form() -> None:
    event = make_event()
    assert event.family == AF_INET
    assert event.local == "192.0.2.1:43210"
    assert event.remote == "192.0.2.2:80"


def test_ipv6_endpoints_are_bracketed() -> None:
    event = make_event(local="2001:db8::1", remote="2001:db8::2")
    assert event.family == AF_INET6
    assert event.local == "[2001:db8::1]:43210"


def test_states_are_documented_names() -> None:
    event = make_event(oldstate=1, newstate=4)
    assert documented(event.oldstate) is State.ESTABLISHED
    assert documented(event.newstate) is State.FIN_WAIT_1


def test_unknown_kernel_state_is_unknown_not_an_error() -> None:
    event = decode(encode(make_event(newstate=200)))
    assert documented(event.newstate) is State.UNKNOWN


def test_time_in_old_state_is_none_when_not_seen() -> None:
    assert make_event(since_ns=0).time_in_old_state_ns is None
    assert make_event(since_ns=3_000_000, ts_ns=2_000_000).time_in_old_state_ns is None
    assert make_event().time_in_old_state_ns == 1_000_000


def test_short_record_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="expected 128"):
        decode(b"\0" * 40)


def test_unknown_kind_is_a_decode_error() -> None:
    record = bytearray(encode(make_event()))
    record[KIND_OFFSET] = 99
    with pytest.raises(DecodeError, match="kind 99"):
        decode(bytes(record))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "bogus"}, "unknown event kind 'bogus'"),
        ({"ts_ns": "soon"}, "field ts_ns is not an integer"),
        ({"facts": True}, "field facts is not an integer"),
        ({"saddr": "zz"}, "bad address"),
        ({"daddr": "00"}, "addresses must be 16 bytes"),
        ({"comm": 5}, "field comm is not a string"),
    ],
)
def test_bad_records_name_the_field(change: dict[str, object], message: str) -> None:
    record = make_event().to_record() | change
    with pytest.raises(DecodeError, match=message):
        from_record(record)


def test_missing_fields_are_named() -> None:
    record = make_event().to_record()
    del record["netns"], record["reason"]
    with pytest.raises(DecodeError, match="missing field\\(s\\): netns, reason"):
        from_record(record)
    with pytest.raises(DecodeError, match="not a JSON object"):
        from_record([1, 2])  # type: ignore[arg-type]
