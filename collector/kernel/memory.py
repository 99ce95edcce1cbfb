"""Give back the memory bcc's compiler leaves behind once the probes are loaded.

bcc compiles each probe in-process with clang and LLVM. Afterwards their code (about 70 MB of
libLLVM and libclang-cpp pages) stays resident, as does the heap the compiler freed. Neither is
needed again until the next compile, so a daemon that compiles once carries them for nothing:
the code pages are dropped (read back from the library file if a later compile needs them:
they are never written, so nothing is lost) and freed heap goes back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
from pathlib import Path

MADV_DONTNEED = 4
# Only the compiler's libraries, and only their executable (never written) mappings.
COMPILER_LIBRARIES = re.compile(r"/lib(LLVM|clang)[^/]*\.so")
MAPS = Path("/proc/self/maps")

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_libc.malloc_trim.argtypes = (ctypes.c_size_t,)


def compiler_code_ranges(maps: str) -> list[tuple[int, int]]:
    """(start, end) of every executable mapping of the compiler's libraries in ``maps``."""
    ranges = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[1] == "r-xp" and COMPILER_LIBRARIES.search(fields[5]):
            start, end = (int(part, 16) for part in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


def release_compiler_memory() -> None:
    """Drop the compiler's resident code pages and return freed heap to the system."""
    for start, end in compiler_code_ranges(MAPS.read_text()):
        _libc.madvise(start, end - start, MADV_DONTNEED)  # best effort: nothing to undo
    gc.collect()
    _libc.malloc_trim(0)
