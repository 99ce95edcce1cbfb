"""The shapes of the watch/replay view (--csv, --json, --timestamps, --wide, --pid, the summary),
driven through `synfin replay` on recorded kernel events, as `watch` shows live ones."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

from synfin.cli.main import main
from synfin.errors import EXIT_USAGE
from synfin.views.lines import CSV_COLUMNS
from synfin.views.watch import ViewCounters
from tests.paths import FIXTURES

FIXTURES = FIXTURES / "scenarios"
CLIENT_CLOSES = str(FIXTURES / "client-closes-ipv6.jsonl")
REFUSED = str(FIXTURES / "refused-ipv4.jsonl")


def replay(*args: str) -> tuple[str, str]:
    result = CliRunner().invoke(main, ["replay", *args])
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def test_csv_has_a_header_and_one_row_per_step_note_and_verdict() -> None:
    out, _ = replay(REFUSED, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    steps = [(r["from"], r["to"]) for r in rows if r["type"] == "step"]
    assert steps == [("CLOSED", "SYN-SENT"), ("SYN-SENT", "CLOSED")]
    assert [r["note"] for r in rows if r["type"] == "note"] == [
        "RST sent in no socket (no_socket)",
        "RST received in SYN-SENT",
    ]
    (verdict,) = [r for r in rows if r["type"] == "classified"]
    assert verdict["note"].startswith("active open, refused")
    assert float(rows[-2]["time_in_from_s"]) > 0


def test_relative_timestamps_start_at_zero_and_grow() -> None:
    out, _ = replay(CLIENT_CLOSES, "--timestamps", "relative")
    times = [float(line.split()[0]) for line in out.splitlines()[1:]]
    assert times[0] == 0.0
    assert max(times) > 0.05  # the close comes 100 ms after the connect


def test_wide_view_keeps_ipv6_columns_aligned_and_shows_the_namespace() -> None:
    out, _ = replay(CLIENT_CLOSES, "--wide")
    header, *lines = out.splitlines()
    assert "NETNS" in header
    column = header.index("TRANSITION")
    assert all(line[column - 1] == " " and line[column] != " " for line in lines if "->" in line)
    narrow, _ = replay(CLIENT_CLOSES)
    assert "NETNS" not in narrow.splitlines()[0]


def test_pid_filter_keeps_only_that_process() -> None:
    out, _ = replay(CLIENT_CLOSES, "--json")
    owner = json.loads(out.splitlines()[0])["owner_pid"]
    mine, _ = replay(CLIENT_CLOSES, "--json", "--pid", str(owner))
    other, _ = replay(CLIENT_CLOSES, "--json", "--pid", str(owner + 1))
    assert len(mine.splitlines()) == len(out.splitlines())
    assert other == ""


def test_summary_counts_how_connections_ended() -> None:
    _, err = replay(CLIENT_CLOSES)
    assert err.strip().endswith("2 connection(s) ended: 2 graceful close")
    _, err = replay(REFUSED)
    assert err.strip().endswith("1 connection(s) ended: 1 refused")


def test_json_and_csv_together_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["replay", REFUSED, "--json", "--csv"])
    assert result.exit_code == EXIT_USAGE
    assert "choose one of --json and --csv" in result.output


def test_the_summary_names_every_loss_with_what_to_do() -> None:
    counters = ViewCounters(seen=10, lost=2, undecodable=1, unfollowed=3, skipped=4)
    assert counters.losses() == (
        " (raise --ring-buffer-pages or narrow the filters), 1 undecodable, "
        "3 socket(s) no longer followed (the socket table was full: raise --max-sockets), "
        "4 probe run(s) skipped by the kernel (a BPF program was already running there)"
    )
    assert ViewCounters(seen=10).losses() == ""
