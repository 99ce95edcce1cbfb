"""A probe's fragments pasted into one text for bcc (synfin.kernel.probe_source).

bcc rewrites map accesses only in the text it compiles, so the state probe's fragments are
pasted in, with #line directives that keep compiler errors on the fragment's own lines. These
tests build small probes in a temporary directory; none needs root or bcc.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from synfin import probes
from synfin.kernel import loader
from synfin.kernel.probe_source import ProbeSourceError, expand

MAX_PROBE_LINES = 400
LINE_DIRECTIVE = re.compile(r'#line (\d+) "([^"]*)"')
CPP = shutil.which("cpp")


def where_each_line_comes_from(text: str) -> list[tuple[str, int, str]]:
    """(file, line, text) for each line of ``text`` that is not a #line directive, as a C
    compiler reads the directives."""
    located = []
    name, number = "<unnamed>", 1
    for line in text.splitlines():
        directive = LINE_DIRECTIVE.fullmatch(line)
        if directive:
            number, name = int(directive[1]), directive[2]
            continue
        located.append((name, number, line))
        number += 1
    return located


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    """probes/main.c including a header and two fragments, in the layout of the real probe."""
    directory = tmp_path / "probes"
    (directory / "main").mkdir(parents=True)
    (directory / "main.c").write_text(
        "// the main file\n"
        '#include "events.h"\n'
        '#include "main/first.c"\n'
        "int between;\n"
        '  #  include "main/second.c"  // trailing comment\n'
        "int last;\n"
    )
    (directory / "events.h").write_text("struct event { int kind; };\n")
    (directory / "main" / "first.c").write_text("int first_a;\nint first_b;\n")
    # No final newline: the #line back to the main file must still start its own line.
    (directory / "main" / "second.c").write_text("// second\nint second_a;")
    return directory


def test_each_line_keeps_its_file_and_line(probe_dir: Path) -> None:
    assert where_each_line_comes_from(expand(probe_dir / "main.c")) == [
        ("probes/main.c", 1, "// the main file"),
        ("probes/main.c", 2, '#include "events.h"'),
        ("probes/main/first.c", 1, "int first_a;"),
        ("probes/main/first.c", 2, "int first_b;"),
        ("probes/main.c", 4, "int between;"),
        ("probes/main/second.c", 1, "// second"),
        ("probes/main/second.c", 2, "int second_a;"),
        ("probes/main.c", 6, "int last;"),
    ]


def test_directives_name_each_fragment_then_the_main_file_again(probe_dir: Path) -> None:
    directives = [line for line in expand(probe_dir / "main.c").splitlines() if "#line" in line]
    assert directives == [
        '#line 1 "probes/main.c"',
        '#line 1 "probes/main/first.c"',
        '#line 4 "probes/main.c"',
        '#line 1 "probes/main/second.c"',
        '#line 6 "probes/main.c"',
    ]


def test_header_includes_are_left_to_the_compiler(probe_dir: Path) -> None:
    text = expand(probe_dir / "main.c")
    assert '#include "events.h"\n' in text
    assert "struct event" not in text


def test_a_probe_without_fragments_is_only_named(probe_dir: Path) -> None:
    single = probe_dir / "single.c"
    single.write_text('#include "events.h"\nint x;\n')
    assert expand(single) == '#line 1 "probes/single.c"\n#include "events.h"\nint x;\n'


def test_lines_below_a_tracepoint_probe_stay_in_place_after_bcc_inserts_its_struct(
    probe_dir: Path,
) -> None:
    (probe_dir / "main" / "first.c").write_text(
        "int a;\nTRACEPOINT_PROBE(tcp, tcp_destroy_sock)\n{\n    return 0;\n}\n"
    )
    text = expand(probe_dir / "main.c")
    # What bcc does before it reports errors: the tracepoint's fields, one line each.
    probe = "TRACEPOINT_PROBE(tcp, tcp_destroy_sock)"
    text = text.replace(probe, "struct tracepoint__tcp__tcp_destroy_sock {\n\tu64 a;\n};\n" + probe)
    located = where_each_line_comes_from(text)
    assert ("probes/main/first.c", 3, "{") in located
    assert ("probes/main/first.c", 4, "    return 0;") in located
    assert ("probes/main.c", 4, "int between;") in located


def test_a_tracepoint_probe_over_two_lines_gets_no_directive_inside_it(probe_dir: Path) -> None:
    (probe_dir / "main" / "first.c").write_text("TRACEPOINT_PROBE(tcp,\n  tcp_destroy_sock)\n{}\n")
    assert "TRACEPOINT_PROBE(tcp,\n  tcp_destroy_sock)\n{}\n" in expand(probe_dir / "main.c")


def test_a_missing_fragment_is_named_with_the_line_that_includes_it(probe_dir: Path) -> None:
    (probe_dir / "main" / "second.c").unlink()
    with pytest.raises(ProbeSourceError) as raised:
        expand(probe_dir / "main.c")
    assert raised.value.problem == (
        "probes/main.c:5: cannot read probe fragment probes/main/second.c: "
        "No such file or directory"
    )
    assert "main/second.c" in raised.value.fix


def test_a_fragment_including_a_fragment_is_refused(probe_dir: Path) -> None:
    (probe_dir / "main" / "first.c").write_text('int a;\n#include "second.c"\n')
    with pytest.raises(ProbeSourceError, match=r"probes/main/first.c:2: .*\(second.c\)"):
        expand(probe_dir / "main.c")


def test_the_loader_compiles_the_pasted_text(probe_dir: Path, monkeypatch: Any) -> None:
    compiled: dict[str, Any] = {}

    def fake_bpf(**kwargs: Any) -> str:
        compiled.update(kwargs)
        return "loaded"

    monkeypatch.setattr(loader, "import_bcc", lambda: SimpleNamespace(BPF=fake_bpf))
    monkeypatch.setattr(loader, "release_compiler_memory", lambda: None)
    assert loader.load("main.c", ["-w"], directory=probe_dir) == "loaded"
    assert compiled["text"] == expand(probe_dir / "main.c").encode()
    # The probe's own headers first, as they would be found beside a compiled file.
    assert compiled["cflags"] == [f"-I{probe_dir}", "-w"]


def test_the_loader_names_a_missing_fragment(probe_dir: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(loader, "import_bcc", lambda: SimpleNamespace(BPF=None))
    (probe_dir / "main" / "first.c").unlink()
    with pytest.raises(loader.ProbeError, match=re.escape("probe fragment probes/main/first.c")):
        loader.load("main.c", [], directory=probe_dir)


# -- the real probes ----------------------------------------------------------------------


def test_no_probe_file_is_over_400_lines() -> None:
    sizes = {
        path.relative_to(probes.DIRECTORY).as_posix(): len(path.read_text().splitlines())
        for path in sorted(probes.DIRECTORY.rglob("*"))
        if path.suffix in (".c", ".h")
    }
    assert sizes
    assert {name: lines for name, lines in sizes.items() if lines > MAX_PROBE_LINES} == {}


def test_every_state_probe_fragment_is_included() -> None:
    main = probes.DIRECTORY / "tcp_states.c"
    included = set(re.findall(r'^#include "(tcp_states/[^"]+\.c)"$', main.read_text(), re.M))
    on_disk = {
        path.relative_to(probes.DIRECTORY).as_posix()
        for path in (probes.DIRECTORY / "tcp_states").glob("*.c")
    }
    assert included == on_disk


@pytest.mark.skipif(CPP is None, reason="needs a C preprocessor (apt-get install cpp)")
@pytest.mark.parametrize("switches", [[], ["-DSTREAM_EVENTS=0", "-DOBSERVE_RESETS=1"]])
def test_the_preprocessor_reads_the_state_probe_as_bcc_gets_it(
    tmp_path: Path, switches: list[str]
) -> None:
    """tcp_states.c stays C: including the fragments gives the text the loader pastes."""
    pasted = tmp_path / "pasted.c"
    pasted.write_text(expand(probes.DIRECTORY / "tcp_states.c"))

    def preprocessed(path: Path) -> str:
        command = [str(CPP), "-P", f"-I{probes.DIRECTORY}", *switches, str(path)]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    assert preprocessed(probes.DIRECTORY / "tcp_states.c") == preprocessed(pasted)
