"""The probe headers as Python reads them (synfin.records.abi) against a C compiler's reading.

Python takes every constant and record layout it shares with the probes from the headers, so
the two sides cannot drift apart by hand; what can drift is this parser's idea of C. A small C
program prints each constant, struct size and field offset as the compiler sees them, and the
test compares them with the parse. The same check is shown to fail on a deliberately broken
copy of a header, and the decoders to refuse a layout they do not expect.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from synfin import probes
from synfin.records import abi
from synfin.records.events import DECODED_FIELDS

HEADERS = ("synfin_events.h", "synfin_segments.h")
CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="needs a C compiler (apt-get install gcc)")

PRELUDE = """
#include <stddef.h>
#include <stdio.h>
typedef unsigned char u8; typedef signed char s8;
typedef unsigned short u16; typedef short s16;
typedef unsigned int u32; typedef int s32;
typedef unsigned long long u64; typedef long long s64;
"""


def compiler_view(header: Path, parsed: abi.Header, workdir: Path) -> dict[str, int]:
    """``name -> value`` for every constant, ``struct:name`` sizes and ``struct:name.field``
    offsets, as the C compiler lays them out."""
    lines = [PRELUDE, f'#include "{header.name}"', "int main(void) {"]
    for name in [*parsed.defines]:
        lines.append(f'printf("%s %lld\\n", "{name}", (long long)({name}));')
    for name, layout in parsed.structs.items():
        lines.append(f'printf("%s %zu\\n", "struct:{name}", sizeof(struct {name}));')
        for field in layout.fields:
            key = f"struct:{name}.{field.name}"
            lines.append(f'printf("%s %zu\\n", "{key}", offsetof(struct {name}, {field.name}));')
    lines.append("return 0; }")
    source = workdir / "abi_check.c"
    source.write_text("\n".join(lines))
    binary = workdir / "abi_check"
    subprocess.run(
        [CC, "-I", str(header.parent), "-o", str(binary), str(source)],
        check=True,
        capture_output=True,
    )
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    return {key: int(value) for key, value in (line.split() for line in output.splitlines())}


def python_view(parsed: abi.Header) -> dict[str, int]:
    view = dict(parsed.defines)
    for name, layout in parsed.structs.items():
        view[f"struct:{name}"] = layout.size
        view.update({f"struct:{name}.{f.name}": f.offset for f in layout.fields})
    return view


def differences(header: Path, workdir: Path) -> list[str]:
    parsed = abi.parse(header)
    compiled = compiler_view(header, parsed, workdir)
    ours = python_view(parsed)
    return [
        f"{key}: C says {compiled.get(key)}, synfin.records.abi says {ours.get(key)}"
        for key in sorted(set(compiled) | set(ours))
        if compiled.get(key) != ours.get(key)
    ]


@needs_cc
@pytest.mark.parametrize("name", HEADERS)
def test_python_reads_the_headers_as_the_compiler_does(name: str, tmp_path: Path) -> None:
    header = probes.DIRECTORY / name
    assert differences(header, tmp_path) == []
    # The comparison covered what the decoders and metrics rely on.
    parsed = abi.parse(header)
    assert "synfin_event" in parsed.structs
    assert len(parsed.prefixed("FACT_")) >= 18


@needs_cc
def test_a_layout_the_parser_misreads_is_caught(tmp_path: Path) -> None:
    """On a copy: a packed struct loses its tail padding for the compiler, not for the parser."""
    for name in HEADERS:
        shutil.copy(probes.DIRECTORY / name, tmp_path / name)
    header = tmp_path / "synfin_segments.h"
    text = header.read_text()
    packed = text.replace("    u8 daddr[16];\n};", "    u8 daddr[16];\n} __attribute__((packed));")
    assert packed != text
    header.write_text(packed)
    assert "struct:synfin_segment: C says 68, synfin.records.abi says 72" in differences(
        header, tmp_path
    )


def test_the_decoder_refuses_fields_in_another_order(tmp_path: Path) -> None:
    """On a copy: two fields swapped in struct synfin_event."""
    header = tmp_path / "synfin_events.h"
    text = (probes.DIRECTORY / "synfin_events.h").read_text()
    swapped = text.replace("    u32 pid;", "    u32 tmp;").replace(
        "    u32 owner_pid;", "    u32 pid;"
    )
    swapped = swapped.replace("    u32 tmp;", "    u32 owner_pid;")
    assert swapped != text
    header.write_text(swapped)
    layout = abi.parse(header).struct("synfin_event")
    with pytest.raises(abi.AbiError, match="synfin's decoder expects"):
        layout.require(DECODED_FIELDS)
    abi.parse(probes.DIRECTORY / "synfin_events.h").struct("synfin_event").require(DECODED_FIELDS)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("#define X (1u << Y)\n", "cannot evaluate 'Y'"),
        ("struct s {\n    float f;\n};\n", "the type float has no fixed size"),
        ("struct s {\n    struct t inner;\n};\n", "struct t is not defined"),
        ("enum e {\n    A = 1,\n", "never ends"),
        ("struct __attribute__((packed)) s {\n    u8 a;\n};\n", "cannot read the declaration"),
    ],
)
def test_what_the_parser_cannot_read_is_one_clear_error(
    tmp_path: Path, text: str, problem: str
) -> None:
    header = tmp_path / "bad.h"
    header.write_text(text)
    with pytest.raises(abi.AbiError, match=problem) as raised:
        abi.parse(header)
    assert "bad.h:" in str(raised.value)
