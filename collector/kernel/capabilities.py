"""What each capability gives synfin, and what is lost without it: the one table behind
``synfin doctor``'s capability lines, docs/security.md, deploy/synfin.service and
deploy/kubernetes/daemonset.yaml (tests hold them to it)."""

from __future__ import annotations

from dataclasses import dataclass

from synfin.kernel import privileges


@dataclass(frozen=True)
class CapabilityUse:
    name: str
    bit: int
    enables: str
    lost_without: str
    wanted: str  # when synfin needs it
    container: bool  # in the container's minimal set (--ground-truth host)


USES = (
    CapabilityUse(
        "CAP_BPF", privileges.CAP_BPF,
        "creating and reading BPF maps, loading BPF programs",
        "everything: no probe loads (CAP_SYS_ADMIN stands in for it)",
        "always", container=True,
    ),
    CapabilityUse(
        "CAP_PERFMON", privileges.CAP_PERFMON,
        "attaching tracing programs to tracepoints",
        "everything: no probe attaches (CAP_SYS_ADMIN stands in for it)",
        "always", container=True,
    ),
    CapabilityUse(
        "CAP_SYSLOG", privileges.CAP_SYSLOG,
        "kernel symbol addresses in /proc/kallsyms, which kptr_restrict and "
        "perf_event_paranoid hide from other processes",
        "the timer hooks: TIME-WAIT's end and SYN-RCVD's start are inferred, and the lean "
        "tier is off",
        "where kallsyms hides addresses (Debian's and Ubuntu's defaults)", container=True,
    ),
    CapabilityUse(
        "CAP_SETPCAP", privileges.CAP_SETPCAP,
        "cutting the bounding set once the probes are attached",
        "the bounding set keeps what serving does not need (the other sets are still cut and "
        "no_new_privs still stops any gain on exec)",
        "always", container=True,
    ),
    CapabilityUse(
        "CAP_SYS_ADMIN", privileges.CAP_SYS_ADMIN,
        "entering every network namespace for the ground truth (--ground-truth all)",
        "the ground truth covers synfin's own namespace only (the lean tier's time_wait "
        "series comes from the census of every namespace)",
        "--ground-truth all, the default", container=False,
    ),
    CapabilityUse(
        "CAP_SYS_PTRACE", privileges.CAP_SYS_PTRACE,
        "opening other users' processes' namespace files (/proc/PID/ns/net)",
        "namespaces found only through other users' processes are left out of the ground "
        "truth",
        "--ground-truth all, the default", container=False,
    ),
    CapabilityUse(
        "CAP_SYS_RESOURCE", privileges.CAP_SYS_RESOURCE,
        "raising the locked-memory limit that BPF maps count against before Linux 5.11",
        "on those kernels, large maps may fail to be created (later kernels charge them to "
        "the memory cgroup instead)",
        "Linux before 5.11", container=False,
    ),
)  # fmt: skip

BY_NAME = {use.name: use for use in USES}
CONTAINER_SET = tuple(use.name for use in USES if use.container)


def without(name: str) -> str:
    """The line synfin says when it runs without ``name``."""
    lost = BY_NAME[name].lost_without
    return f"without {name}: {lost} (add {name} to synfin's unit or container)"


def bounding_set_cut_off() -> bool:
    """Whether synfin cannot cut its bounding set once attached (no CAP_SETPCAP)."""
    return not privileges.effective() >> privileges.CAP_SETPCAP & 1
