"""Why the kernel refuses synfin's system calls: a seccomp filter, or missing capabilities.

bcc reports any failure to create a map or load a program as "Failed to compile BPF module",
and a refused perf_event_open() as a failed attach. Asked directly, the two calls synfin needs
say which it is: each is tried once with the smallest request it can make (an array map of one
element; a software dummy event on this process, which counts nothing) and closed at once.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from pathlib import Path

from synfin.kernel import privileges

# System call numbers, per architecture (asm/unistd_64.h, asm-generic/unistd.h).
CALL_NUMBERS = {
    "x86_64": {"bpf": 321, "perf_event_open": 298},
    "aarch64": {"bpf": 280, "perf_event_open": 241},
}
BPF_MAP_CREATE = 0
BPF_MAP_TYPE_ARRAY = 2
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_DUMMY = 9
PERF_ATTR_SIZE_VER0 = 64
PERF_FLAG_FD_CLOEXEC = 8
SECCOMP_MODE_FILTER = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _call(name: str, *arguments: object) -> int:
    """0 if the call succeeded (its file is closed), else its errno; 0 where synfin does not
    know the call's number (not asked)."""
    number = CALL_NUMBERS.get(platform.machine(), {}).get(name)
    if number is None:
        return 0
    fd = _libc.syscall(ctypes.c_long(number), *arguments)
    if fd < 0:
        return ctypes.get_errno()
    os.close(fd)
    return 0


def try_bpf() -> int:
    attr = ctypes.create_string_buffer(struct.pack("=5I", BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0), 20)
    return _call("bpf", ctypes.c_long(BPF_MAP_CREATE), attr, ctypes.c_long(len(attr)))


def try_perf_event_open() -> int:
    attr = bytearray(PERF_ATTR_SIZE_VER0)
    struct.pack_into("=IIQ", attr, 0, PERF_TYPE_SOFTWARE, PERF_ATTR_SIZE_VER0, PERF_COUNT_SW_DUMMY)
    struct.pack_into("=Q", attr, 40, 1)  # disabled: it is never started
    buffer = ctypes.create_string_buffer(bytes(attr), len(attr))
    return _call(
        "perf_event_open", buffer, ctypes.c_long(0), ctypes.c_long(-1), ctypes.c_long(-1),
        ctypes.c_long(PERF_FLAG_FD_CLOEXEC),
    )  # fmt: skip


def seccomp_mode(status: Path = Path("/proc/self/status")) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("Seccomp:"):
            return int(line.split()[1])
    return 0


def refusal() -> tuple[str, str] | None:
    """(problem, fix) when bpf() or perf_event_open() is refused to this process, else None."""
    refused = [
        name
        for name, attempt in (("bpf", try_bpf), ("perf_event_open", try_perf_event_open))
        if attempt() in (errno.EPERM, errno.EACCES)
    ]
    if not refused:
        return None
    calls = " and ".join(f"{name}()" for name in refused)
    if privileges.can_load_bpf() and seccomp_mode() == SECCOMP_MODE_FILTER:
        return (
            f"a seccomp filter refuses {calls} to synfin (Seccomp: filter in /proc/self/status)",
            "run the container with a profile that allows bpf and perf_event_open "
            "(deploy/container/seccomp-profile.py writes one), not the runtime's default",
        )
    missing = privileges.missing_for_loading()
    if missing:
        return (
            f"the kernel refuses {calls} to synfin: it runs without {' and '.join(missing)}",
            f"run synfin as root, or add {' and '.join(missing)} (docs/security.md)",
        )
    return (
        f"the kernel refuses {calls} to synfin although it holds the capabilities they need",
        "a security module (SELinux, AppArmor) may deny them: see its audit log",
    )
