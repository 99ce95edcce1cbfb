"""The compiler's memory is given back once the probes are loaded, and compiling again after
that still works (its code pages are read back from the library files)."""

from __future__ import annotations

from synfin.kernel.memory import compiler_code_ranges

MAPS = """\
7f0000000000-7f0000100000 r--p 00000000 08:01 11 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f0000100000-7f0003000000 r-xp 00100000 08:01 11 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f0003000000-7f0003100000 rw-p 03000000 08:01 11 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f0004000000-7f0005000000 r-xp 00200000 08:01 12 /usr/lib/llvm-14/lib/libclang-cpp.so.14
7f0006000000-7f0006100000 r-xp 00000000 08:01 13 /usr/lib/x86_64-linux-gnu/libbcc.so.0.26.0
7f0007000000-7f0007100000 r-xp 00000000 00:00 0
"""


def test_only_the_compilers_executable_mappings_are_chosen() -> None:
    assert compiler_code_ranges(MAPS) == [
        (0x7F0000100000, 0x7F0003000000),
        (0x7F0004000000, 0x7F0005000000),
    ]
