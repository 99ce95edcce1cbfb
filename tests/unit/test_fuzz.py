"""The parsers of untrusted input, fuzzed for a bounded time: any input gives a value or the
documented error, never anything else."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synfin.cli.run import load_config_file, run
from synfin.exporter.web import WebConfigError, load_web_config
from synfin.records.events import DecodeError, Event, from_record
from synfin.records.recording import Reader, RecordingError

BOUNDED = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=6)
    ),
    max_leaves=20,
)
FIELDS = [
    "kind", "ts_ns", "skaddr", "since_ns", "start_ns", "aux", "cgroup_id", "pid", "owner_pid",
    "netns", "facts", "family", "sport", "dport", "flags", "saddr", "daddr", "comm", "oldstate",
    "newstate", "detail", "syn_retrans", "reason",
]  # fmt: skip
HEADER = (
    '{"synfin_recording":1,"kernel":"x","clock_offset_ns":0,"capabilities":{},"reset_reasons":{}}\n'
)


@BOUNDED
@given(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=len(FIELDS)) | JSON)
def test_event_records(record: object) -> None:
    with contextlib.suppress(DecodeError):
        assert isinstance(from_record(record), Event)  # type: ignore[arg-type]


@BOUNDED
@given(st.binary(max_size=2000) | st.text(max_size=2000).map(lambda text: (HEADER + text).encode()))
def test_recordings(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(content)
    with contextlib.suppress(RecordingError), Reader(path) as reader:
        for event in reader:
            assert isinstance(event, Event)


@BOUNDED
@given(st.text(max_size=500) | JSON.map(json.dumps))
def test_web_configs(tmp_path: Path, content: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(content)
    with contextlib.suppress(WebConfigError):
        load_web_config(path)


@BOUNDED
@given(st.text(max_size=500) | JSON.map(json.dumps))
def test_run_config_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "synfin.yml"
    path.write_text(content)
    context = click.Context(run)
    with contextlib.suppress(click.BadParameter):
        load_config_file(context, click.Option(["--config"]), path)
