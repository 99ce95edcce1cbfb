"""--per-connection without BPF: connection records decode, record and replay losslessly, and
tell each socket end's story as the per-step stream of the same connections does
(tests/fixtures/connections/: both streams of one live run, recorded by
tests/integration/test_per_connection.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from synfin.records import recording
from synfin.records.connections import (
    CONNECTION_SIZE,
    FLAG_PART,
    PATH_STEPS,
    ConnectionRecord,
    connection_from_record,
    decode_connection,
    encode_connection,
)
from synfin.records.description import KernelDescription
from synfin.records.events import DecodeError
from synfin.views.connections import ConnectionView
from tests.paths import FIXTURES
from tests.stories import assert_same_story, lines_from_connections, lines_from_events

PAIRS = sorted((FIXTURES / "connections").glob("*.connections.jsonl"))
TOLERANCE_NS = 5_000_000  # two probes stamped each moment (see the integration test)


def read(path: Path) -> tuple[list, KernelDescription]:
    with recording.Reader(path) as reader:
        return list(reader), reader.header.description


def events_of(path: Path) -> Path:
    return path.with_name(path.name.replace(".connections.", ".events."))


def test_every_scenario_was_recorded_in_both_modes() -> None:
    assert len(PAIRS) == 22
    assert all(events_of(path).exists() for path in PAIRS)


@pytest.mark.parametrize("path", PAIRS, ids=[p.name.split(".")[0] for p in PAIRS])
def test_both_modes_tell_the_same_story(path: Path) -> None:
    records, described = read(path)
    events, _ = read(events_of(path))
    by_connection, view = lines_from_connections(records, described)
    assert_same_story(lines_from_events(events, described), by_connection, TOLERANCE_NS)
    assert view.read_by_engine == 0  # every record went through its shape's template


def client_record() -> tuple[ConnectionRecord, KernelDescription]:
    records, described = read(FIXTURES / "connections" / "client-closes-ipv4.connections.jsonl")
    client = next(r for r in records if r.timewait)  # the end that went through TIME-WAIT
    return client, described


def engine_lines(records: list[ConnectionRecord], described: KernelDescription) -> list[str]:
    """The lines with the shortcut off: the engine reads every record."""
    out = io.StringIO()
    view = ConnectionView(out=out, description=described, offset_ns=0)
    view._learn = lambda record: None  # type: ignore[method-assign]
    for record in records:
        view.on_record(record)
    assert view.read_by_engine == len(records)
    return out.getvalue().splitlines()


def test_a_template_gives_another_record_of_its_shape_its_own_times_and_names() -> None:
    first, described = client_record()
    later = first._replace(
        skaddr=first.skaddr + 0x1000,
        timewait=first.timewait + 0x2000,
        sport=first.sport + 1,
        start_ns=first.start_ns + 7_000_000_123,
        owner_pid=4242,
        comm="curl",
        path=tuple(
            step._replace(ts_ns=step.ts_ns + 7_000_000_123 + 1000 * i)
            for i, step in enumerate(first.path)
        ),
    )
    out = io.StringIO()
    view = ConnectionView(out=out, description=described, offset_ns=0)
    view.on_record(first)
    view.on_record(later)
    assert view.read_by_engine == 0 and len(view.templates) == 1
    assert out.getvalue().splitlines() == engine_lines([first, later], described)
    shown = json.loads(out.getvalue().splitlines()[1])
    assert (shown["owner_pid"], shown["comm"]) == (4242, "curl")


def test_a_path_sent_in_parts_is_one_connection() -> None:
    whole, described = client_record()
    head = whole._replace(path=whole.path[:3], flags=FLAG_PART)
    tail = whole._replace(path=whole.path[3:])
    in_parts, view = lines_from_connections([head, tail], described)
    at_once, _ = lines_from_connections([whole], described)
    assert in_parts == at_once
    assert view.read_by_engine == 2


def test_records_round_trip_through_the_probe_layout_and_a_recording() -> None:
    record, _ = client_record()
    raw = encode_connection(record)
    assert len(raw) == CONNECTION_SIZE
    assert decode_connection(raw) == record
    assert connection_from_record(json.loads(json.dumps(record.to_record()))) == record


def test_bad_connection_records_are_refused_with_the_reason() -> None:
    record, _ = client_record()
    raw = bytearray(encode_connection(record))
    with pytest.raises(DecodeError, match="expected"):
        decode_connection(bytes(raw[:100]))
    steps_at = 8 * 4 + 4 * 3 + 2 * 3 + 1  # after the u64s, u32s, u16s and syn_retrans
    raw[steps_at] = PATH_STEPS + 1
    with pytest.raises(DecodeError, match="steps"):
        decode_connection(bytes(raw))
    broken = record.to_record()
    broken["path"] = [[0, 0, 0, 99, 0, 0, 0, 0]]
    with pytest.raises(DecodeError, match="unknown event kind"):
        connection_from_record(broken)
    del broken["facts"]
    with pytest.raises(DecodeError, match="missing field"):
        connection_from_record(broken)


def test_a_recording_says_which_records_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text('{"synfin_recording": 1, "records": "packets"}\n')
    with pytest.raises(recording.RecordingError, match="unknown kind"):
        recording.Reader(path)
