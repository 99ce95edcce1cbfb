"""Dropping the capabilities the serving process no longer needs.

Loading and attaching BPF programs needs much (CAP_BPF, CAP_PERFMON, often CAP_SYS_ADMIN);
reading their maps afterwards needs only CAP_BPF, because Debian and most distributions
disable unprivileged bpf() entirely (kernel.unprivileged_bpf_disabled). Entering other network
namespaces for the ground truth needs CAP_SYS_ADMIN, and opening other users' processes'
namespace files CAP_SYS_PTRACE. Everything else goes, from the effective, permitted,
inheritable, ambient and bounding sets, and no_new_privs is set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterable
from pathlib import Path

from synfin.errors import SynfinError

CAP_SETPCAP = 8
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24
CAP_BPF = 39
CAP_SYSLOG = 34
CAP_PERFMON = 38
CAP_NAMES = {
    CAP_SETPCAP: "CAP_SETPCAP", CAP_SYS_PTRACE: "CAP_SYS_PTRACE", CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
    CAP_SYS_RESOURCE: "CAP_SYS_RESOURCE", CAP_SYSLOG: "CAP_SYSLOG", CAP_PERFMON: "CAP_PERFMON",
    CAP_BPF: "CAP_BPF",
}  # fmt: skip

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def needed(ground_truth: str) -> set[int]:
    """What the serving process keeps, for a ground-truth scope ("all", "host" or "off")."""
    return {CAP_BPF, CAP_SYS_ADMIN, CAP_SYS_PTRACE} if ground_truth == "all" else {CAP_BPF}


def _prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise SynfinError(f"prctl({option}, {arg}): {os.strerror(error)}", "run synfin as root")


def keep_only(keep: set[int]) -> bool:
    """Drop every capability not in ``keep``, for good. False when the bounding set could not
    be cut (no CAP_SETPCAP): the other sets still are, and no_new_privs stops any gain on exec."""
    cut_bounding = bool(effective() >> CAP_SETPCAP & 1)
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        if cap not in keep and cut_bounding:
            _prctl(PR_CAPBSET_DROP, cap)  # needs CAP_SETPCAP: before it goes below
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    mask = sum(1 << cap for cap in keep)
    data = (_Data * 2)()
    for word in range(2):
        bits = (mask >> (32 * word)) & 0xFFFFFFFF
        data[word].effective = data[word].permitted = bits
        data[word].inheritable = 0
    if _libc.capset(ctypes.byref(_Header(LINUX_CAPABILITY_VERSION_3, 0)), data) != 0:
        error = ctypes.get_errno()
        raise SynfinError(f"capset: {os.strerror(error)}", "run synfin as root")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    return cut_bounding


def can_load_bpf() -> bool:
    """CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON: what loading tracing programs needs.

    Judged by capabilities, not the uid: root without them cannot load either."""
    caps = effective()
    return bool(caps >> CAP_SYS_ADMIN & 1) or bool(caps >> CAP_BPF & 1 and caps >> CAP_PERFMON & 1)


def missing_for_loading() -> list[str]:
    """The capabilities loading lacks (empty when it has what it needs)."""
    if can_load_bpf():
        return []
    caps = effective()
    return [name for cap, name in ((CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON"))
            if not caps >> cap & 1]  # fmt: skip


def effective() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


SYSCTLS = Path("/proc/sys/kernel")
SYMBOL_SYSCTLS = ("kptr_restrict", "perf_event_paranoid")


def kallsyms_shows_addresses(kallsyms: Path = Path("/proc/kallsyms")) -> bool:
    """Whether this process sees real addresses there (the kernel shows zeros otherwise)."""
    try:
        with kallsyms.open() as lines:
            return int(next(lines).split()[0], 16) != 0
    except (OSError, StopIteration, ValueError, IndexError):
        return False


def symbols_problem(names: Iterable[str], kallsyms: Path) -> str:
    """Why kallsyms gave no address for ``names``: hidden from this process, or not there."""
    wanted, listed = set(names), set()
    try:
        with kallsyms.open() as lines:
            listed = {part[2] for part in map(str.split, lines) if len(part) > 2} & wanted
    except OSError as error:
        return f"cannot read {kallsyms}: {error.strerror}"
    if not listed:
        return f"{', '.join(sorted(wanted))} not in {kallsyms}"
    # The kernel shows addresses to CAP_SYSLOG unless kptr_restrict is 2, and to everyone when
    # kptr_restrict is 0 and perf_event_paranoid at most 1 (kallsyms_show_value()).
    settings = ", ".join(f"kernel.{name}={_sysctl(name)}" for name in SYMBOL_SYSCTLS)
    if not effective() >> CAP_SYSLOG & 1:
        return (
            f"CAP_SYSLOG missing: {kallsyms} hides kernel addresses from synfin ({settings}); "
            "add CAP_SYSLOG to its unit or container"
        )
    return (
        f"{kallsyms} hides kernel addresses even with CAP_SYSLOG ({settings}); "
        "set kernel.kptr_restrict to 1"
    )


def _sysctl(name: str) -> str:
    try:
        return (SYSCTLS / name).read_text().strip()
    except OSError:
        return "?"


def describe(mask: int) -> str:
    names = [CAP_NAMES.get(cap, f"cap_{cap}") for cap in range(64) if mask >> cap & 1]
    return ", ".join(names) or "none"
