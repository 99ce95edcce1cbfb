"""The synfin command line, driven as a person would: flags, exit codes, signals."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from synfin.cli.main import main
from synfin.errors import EXIT_FAILURE, EXIT_USAGE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["watch", "--port", "0"], "0 is not in the range 1<=x<=65535"),
        (["watch", "--port", "http"], "'http' is not a valid integer"),
        (["watch", "--family", "ipx"], "'ipx' is not one of"),
        (["watch", "--duration", "-1"], "-1.0 is not in the range x>0"),
        (["watch", "--ring-buffer-pages", "100"], "100 is not a power of two"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_flags_exit_2_with_the_reason(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == EXIT_USAGE
    assert message in result.output


def test_doctor_fails_with_the_mount_command_when_tracefs_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["doctor", "--tracefs", str(tmp_path)])
    assert result.exit_code == EXIT_FAILURE
    assert (
        f"[FAIL] tracefs: tracefs is not mounted at {tmp_path} "
        "(fix: mount -t tracefs tracefs /sys/kernel/tracing)"
    ) in result.output
    assert "synfin cannot run here" in result.output


# The documented transitions of one loopback connection, client closing first, as `watch`
# draws them: `~>` marks the step inferred from the peer's FIN.


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


HEADER = (
    '{"synfin_recording":1,"kernel":"6.18","clock_offset_ns":0,"capabilities":{},'
    '"reset_reasons":{}}\n'
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("hello\n", "is not a synfin recording (no header line)"),
        (HEADER.replace(":1,", ":7,", 1), "is a schema 7 recording; this synfin reads schema 1"),
        (HEADER + "{not json\n", ":2: not JSON"),
        (HEADER + '{"kind":"state_change"}\n', ":2: missing field(s)"),
        (b"\x00\xff\xfe binary", "not UTF-8 text"),
    ],
)
def test_replay_names_what_is_wrong_with_a_file(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = write(tmp_path / "bad.jsonl", content)
    result = CliRunner().invoke(main, ["replay", str(path)])
    assert result.exit_code == EXIT_FAILURE
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_replay_of_a_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["replay", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == EXIT_FAILURE
    assert "no such file (fix: give the path of a synfin recording)" in result.stderr
