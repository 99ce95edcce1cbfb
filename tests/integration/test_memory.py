"""The compiler's memory is given back once the probes are loaded, and compiling again after
that still works (its code pages are read back from the library files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from synfin.kernel.segment_probe import SegmentCapture
from synfin.kernel.state_probe import ProbeOptions, TcpProbe


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
