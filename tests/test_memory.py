"""The compiler's memory is given back once the probes are loaded, and compiling again after
that still works (its code pages are read back from the library files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from collector.capture import SegmentCapture
from collector.memory import compiler_code_ranges
from collector.probes import ProbeOptions, TcpProbe

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


def resident_compiler_code_mb() -> float:
    total_kb, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        header = re.match(r"^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$", line)
        if header:
            inside = header[1] == "r-xp" and re.search(r"/lib(LLVM|clang)", header[2]) is not None
        elif inside and line.startswith("Rss:"):
            total_kb += int(line.split()[1])
    return total_kb / 1024


@pytest.mark.bpf
def test_loading_leaves_little_of_the_compiler_resident_and_compiling_again_works() -> None:
    with TcpProbe(ProbeOptions(stream_events=False)) as probe:
        # Compiling touched tens of MB of LLVM code; a page or two may come back by now.
        assert resident_compiler_code_mb() < 5
        assert probe.attached()["sock:inet_sock_set_state"]
        with SegmentCapture() as capture:  # a second compile, after the pages were dropped
            assert capture.stats().lost == 0
