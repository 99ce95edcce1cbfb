"""Compiler errors in the state probe name the fragment and its line, through bcc itself.

bcc compiles the probe as one pasted text (synfin.kernel.probe_source); without the #line
directives clang would report every error at a line of that text, in a file that does not
exist. Each test compiles a copy of probes/ through the loader with one line planted in a
fragment, and reads clang's diagnostics where bcc prints them: on stderr.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from synfin import probes
from synfin.kernel.features import detect
from synfin.kernel.loader import ProbeError, load
from synfin.kernel.state_probe import ProbeOptions

pytestmark = pytest.mark.bpf

PLANTED = "int synfin_planted_error = ;"  # clang: "expected expression"


@pytest.fixture(scope="module")
def cflags() -> list[str]:
    """The state probe's real switches, so every fragment's code is compiled."""
    return ProbeOptions().cflags(detect())


@pytest.fixture
def probe_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "probes"
    shutil.copytree(probes.DIRECTORY, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def plant(fragment: Path, line: int) -> None:
    """Put PLANTED at ``line`` (1-based) of ``fragment``, moving the rest down."""
    lines = fragment.read_text().splitlines(keepends=True)
    lines.insert(line - 1, PLANTED + "\n")
    fragment.write_text("".join(lines))


def test_the_copy_loads_as_the_probe_does(probe_copy: Path, cflags: list[str]) -> None:
    load("tcp_states.c", cflags, directory=probe_copy).cleanup()


@pytest.mark.parametrize(
    ("fragment", "where"),
    [("sockets.c", "first"), ("timewait.c", "middle"), ("state_change.c", "after the end")],
)
def test_a_compile_error_names_the_fragment_and_its_line(
    probe_copy: Path,
    cflags: list[str],
    capfd: pytest.CaptureFixture[str],
    fragment: str,
    where: str,
) -> None:
    path = probe_copy / "tcp_states" / fragment
    length = len(path.read_text().splitlines())
    # Between two top-level definitions: the line before a blank one that follows a "}".
    middle = next(
        number
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if number > length // 2 and text == "}"
    )
    line = {"first": 1, "middle": middle + 1, "after the end": length + 1}[where]
    plant(path, line)
    with pytest.raises(ProbeError, match="bcc could not compile"):
        load("tcp_states.c", cflags, directory=probe_copy)
    errors = capfd.readouterr().err
    assert f"probes/tcp_states/{fragment}:{line}:" in errors, errors
    assert "expected expression" in errors
    assert PLANTED in errors  # clang quotes the planted line: it read the fragment's text
