"""One compilable text from a probe split into fragments (``probes/tcp_states.c``).

bcc rewrites map accesses (``sockets.lookup(&key)``, ``stats.increment(i)``) only in the main
file it compiles: in an ``#include``d file they reach clang unrewritten and fail. So a probe's
fragments are pasted into the main file's text here, in place of their ``#include "NAME.c"``
lines, and bcc compiles that text. ``#line`` directives around each fragment keep clang's
diagnostics on the file a person edits: ``probes/tcp_states/resets.c:12:5: error: ...``.
bcc reports errors after inserting, before each ``TRACEPOINT_PROBE``, a struct of the
tracepoint's fields (one line per field), so a directive after each such line puts the lines
below it back in place.

Only ``.c`` includes quoted relative to the main file are pasted; headers (``.h``) hold no map
accesses and stay ordinary includes for the compiler (found through ``-I``). A fragment may not
include another fragment: one level keeps every paste visible in the main file's list.
"""

from __future__ import annotations

import re
from pathlib import Path

from synfin.errors import EnvironmentProblem

FRAGMENT_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"(?P<name>[^"]+\.c)"')
# A whole invocation on one line: a directive after a line inside the parentheses would break it.
TRACEPOINT_PROBE_LINE = re.compile(
    r"^[ \t]*TRACEPOINT_PROBE[ \t]*\([ \t]*\w+[ \t]*,[ \t]*\w+[ \t]*\)"
)


class ProbeSourceError(EnvironmentProblem):
    """A probe's fragments could not be put together."""


def display_name(path: Path, root: Path) -> str:
    """``path`` as diagnostics show it: relative to ``root`` where it lies inside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def line_directive(line: int, name: str) -> str:
    # The file name is a C string literal in the directive.
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'#line {line} "{quoted}"\n'


def lines_of(text: str) -> list[str]:
    """``text``'s lines, each with its newline, split where C counts lines (str.splitlines
    also splits at form feeds and other characters C reads as blanks)."""
    return [line + "\n" for line in with_final_newline(text).split("\n")[:-1]]


def fragment_includes(text: str) -> list[tuple[int, str]]:
    """(line number, quoted name) of each ``#include "NAME.c"`` in ``text``."""
    found = []
    for number, line in enumerate(lines_of(text), start=1):
        match = FRAGMENT_INCLUDE.match(line)
        if match:
            found.append((number, match["name"]))
    return found


def read_fragment(main: Path, number: int, name: str, root: Path) -> tuple[Path, str]:
    """The fragment that line ``number`` of ``main`` includes."""
    path = main.parent / name
    try:
        text = path.read_text()
    except OSError as error:
        raise ProbeSourceError(
            f"{display_name(main, root)}:{number}: cannot read probe fragment "
            f"{display_name(path, root)}: {error.strerror}",
            f"restore {name} beside {main.name}, or remove its #include",
        ) from None
    nested = fragment_includes(text)
    if nested:
        line, inner = nested[0]
        raise ProbeSourceError(
            f"{display_name(path, root)}:{line}: fragment includes another fragment ({inner})",
            f"include {inner} from {main.name} instead: fragments are pasted one level deep",
        )
    return path, text


def with_final_newline(text: str) -> str:
    # Else a directive that follows would join the last line.
    return text if not text or text.endswith("\n") else text + "\n"


def numbered_line(line: str, number: int, name: str) -> list[str]:
    """``line`` (line ``number`` of ``name``), then a #line if bcc will push what follows down."""
    if TRACEPOINT_PROBE_LINE.match(line):
        return [line, line_directive(number + 1, name)]
    return [line]


def expand(main: Path) -> str:
    """The text of ``main`` with its ``.c`` fragments pasted in, for ``bcc.BPF(text=...)``.

    File names in the ``#line`` directives are relative to the parent of ``main``'s directory
    (``probes/tcp_states/resets.c``): the path from a checkout's root.
    """
    root = main.parent.parent
    try:
        text = main.read_text()
    except OSError as error:
        raise ProbeSourceError(f"cannot read probe {main}: {error.strerror}") from None
    main_name = display_name(main, root)
    includes = dict(fragment_includes(text))
    parts = [line_directive(1, main_name)]
    for number, line in enumerate(lines_of(text), start=1):
        if number not in includes:
            parts += numbered_line(line, number, main_name)
            continue
        path, fragment = read_fragment(main, number, includes[number], root)
        name = display_name(path, root)
        parts.append(line_directive(1, name))
        for inner, inner_line in enumerate(lines_of(fragment), start=1):
            parts += numbered_line(inner_line, inner, name)
        parts.append(line_directive(number + 1, main_name))
    return "".join(parts)
