"""``synfin doctor``: can synfin run on this host, and what will it see?

Each check prints one line; a failing one names the fix. Checks run in order of dependency and
the probe-loading checks only run when everything they need passed.
"""

from __future__ import annotations

import contextlib
import enum
import os
import platform
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from synfin.errors import SynfinError
from synfin.kernel import capabilities, loader, privileges, tracefs
from synfin.kernel import features as kernel
from synfin.kernel.btf import VMLINUX
from synfin.kernel.state_probe import LEAN, ProbeOptions, TcpProbe

MIN_KERNEL = (4, 16)
BTF_PATH = VMLINUX


class Status(enum.Enum):
    OK = "ok"
    INFO = "info"  # a fact about this host that does not stop synfin
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status.value:^4}] {self.name}: {self.detail}"
        return f"{text} (fix: {self.fix})" if self.fix else text


def parse_kernel_version(release: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match[1]), int(match[2])) if match else None


def check_kernel(release: str | None = None) -> Check:
    release = release or platform.release()
    version = parse_kernel_version(release)
    needed = ".".join(map(str, MIN_KERNEL))
    if version is None:
        return Check("kernel", Status.WARN, f"cannot parse release {release!r}")
    if version < MIN_KERNEL:
        return Check(
            "kernel",
            Status.FAIL,
            f"{release} is older than {needed} (no sock:inet_sock_set_state)",
            f"run synfin on Linux >= {needed}",
        )
    return Check("kernel", Status.OK, f"{release} (>= {needed} needed)")


def check_tracefs(override: Path | None) -> tuple[Check, Path | None]:
    try:
        root = tracefs.find_tracefs(override)
    except tracefs.TracefsError as error:
        return Check("tracefs", Status.FAIL, error.problem, error.fix), None
    return Check("tracefs", Status.OK, f"mounted at {root}"), root


def check_tracepoints(root: Path) -> list[Check]:
    checks = []
    groups = (
        ("state tracepoint", (tracefs.STATE_TRACEPOINT,), Status.FAIL),
        ("tcp tracepoints", tracefs.TCP_TRACEPOINTS, Status.WARN),
        ("softirq tracepoints", tracefs.CONTEXT_TRACEPOINTS, Status.WARN),
    )
    for name, tracepoints, severity in groups:
        problems = []
        for tracepoint in tracepoints:
            try:
                tracefs.check_tracepoint(root, tracepoint)
            except tracefs.TracefsError as error:
                problems.append(str(error))
        if problems:
            checks.append(Check(name, severity, "; ".join(problems)))
        else:
            names = ", ".join(t.qualified for t in tracepoints)
            checks.append(Check(name, Status.OK, f"{names} with the fields synfin reads"))
    return checks


def check_btf(path: Path = BTF_PATH) -> Check:
    if path.exists():
        return Check("BTF", Status.OK, f"{path} present")
    return Check(
        "BTF",
        Status.WARN,
        f"{path} missing: struct offsets cannot be taken from the running kernel",
        "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
    )


def check_capabilities(caps: int | None = None, release: str | None = None) -> list[Check]:
    """One line per capability synfin uses: held (what it gives), or missing (what is lost)."""
    caps = privileges.effective() if caps is None else caps
    can_load = bool(caps >> privileges.CAP_SYS_ADMIN & 1) or all(
        caps >> bit & 1 for bit in (privileges.CAP_BPF, privileges.CAP_PERFMON)
    )
    checks = []
    for use in capabilities.USES:
        name = f"capability {use.name}"
        if caps >> use.bit & 1:
            checks.append(Check(name, Status.OK, f"held: {use.enables}"))
        elif use.bit in (privileges.CAP_BPF, privileges.CAP_PERFMON) and can_load:
            checks.append(Check(name, Status.INFO, "missing: CAP_SYS_ADMIN stands in for it"))
        elif use.bit == privileges.CAP_SYS_RESOURCE and _at_least(release, (5, 11)):
            checks.append(Check(name, Status.INFO, "missing: not needed on Linux >= 5.11"))
        elif use.bit == privileges.CAP_SYSLOG and privileges.kallsyms_shows_addresses():
            checks.append(Check(name, Status.INFO, "missing: not needed here (/proc/kallsyms "
                                "shows addresses to every process)"))  # fmt: skip
        else:
            loading = use.bit in (privileges.CAP_BPF, privileges.CAP_PERFMON)
            status = Status.FAIL if loading else Status.WARN
            fix = f"add {use.name} to synfin's unit or container, or run synfin as root"
            checks.append(Check(name, status, f"missing: {use.lost_without}", fix))
    return checks


def _at_least(release: str | None, version: tuple[int, int]) -> bool:
    parsed = parse_kernel_version(release or platform.release())
    return parsed is not None and parsed >= version


def check_bcc() -> Check:
    try:
        bcc = loader.import_bcc()
    except loader.ProbeError as error:
        return Check("bcc", Status.FAIL, error.problem, error.fix)
    return Check("bcc", Status.OK, f"version {getattr(bcc, '__version__', 'unknown')}")


def check_headers(release: str | None = None, modules: Path = Path("/lib/modules")) -> Check:
    release = release or platform.release()
    build = modules / release / "build"
    if not build.exists():
        return Check(
            "kernel headers",
            Status.FAIL,
            f"{build} missing: bcc cannot compile probes",
            "run scripts/setup.sh (installs headers and links them)",
        )
    target = build.resolve()
    if release in target.name:
        return Check("kernel headers", Status.OK, f"{build} -> {target} (matching)")
    return Check(
        "kernel headers",
        Status.OK,
        f"{build} -> {target}: another version's headers; safe, synfin's probes read tracepoint "
        "arguments and BTF offsets, never the headers' struct layouts",
    )


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Hide what libbpf prints on fd 2 while a feature probe is tried: the check reports it."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_state_probe(root: Path) -> Check:
    started = time.monotonic()
    try:
        with TcpProbe(ProbeOptions(tracefs_root=root)):
            pass
    except SynfinError as error:
        return Check("state probe", Status.FAIL, error.problem, error.fix)
    elapsed = time.monotonic() - started
    return Check(
        "state probe",
        Status.OK,
        f"{TcpProbe.source} compiled, attached and detached in {elapsed:.1f}s",
    )


def check_probe_tiers(root: Path) -> Check:
    """Which tier ``synfin run`` gets here (the live views always use the timers tier)."""
    try:
        with TcpProbe(ProbeOptions(tracefs_root=root, stream_events=False)) as probe:
            tier, hooks, why = probe.tier, sum(probe.attached().values()), probe.lean_unavailable
    except SynfinError as error:
        return Check("probe tier", Status.FAIL, error.problem, error.fix)
    if tier == LEAN:
        return Check(
            "probe tier",
            Status.OK,
            f"synfin run: lean ({hooks} hooks: tp_btf, no timer or softirq hooks); watch, "
            "record, trace and lab: timers (every timewait step observed)",
        )
    return Check(
        "probe tier",
        Status.INFO,
        f"synfin run: timers ({hooks} hooks), not lean: {why}",
        "the lean tier needs Linux >= 5.12 with BTF (tp_btf, socket cookies, BPF atomics)",
    )


def check_fentry() -> Check:
    try:
        with _quiet_stderr():
            loader.try_feature_probe("feature_fentry.c")
    except loader.ProbeError as error:
        return Check(
            "fentry",
            Status.INFO,
            f"{error.problem}; not needed: synfin watches timewait and request sockets through "
            "the timer tracepoints",
        )
    return Check("fentry", Status.OK, "attaches (synfin does not need it)")


# Inferred on every kernel, whatever it offers: the kernel has no event for these moments.
ALWAYS_INFERRED = (
    "TIME-WAIT's start for a socket closed before the peer's FIN (the timewait socket takes "
    "the FIN silently): from the peer's FIN when both ends are on this host, else from the "
    "2MSL expiry, unless a traced timer re-arm shows it",
)


def observation_checks(features: kernel.KernelFeatures) -> list[Check]:
    """Which parts of the documented path this kernel lets synfin observe, and which it infers."""
    checks = []
    for capability in features.capabilities:
        if capability.available:
            checks.append(Check(f"observed: {capability.name}", Status.OK, capability.observes))
        else:
            detail = f"{capability.fallback} ({capability.reason})"
            checks.append(Check(f"inferred: {capability.name}", Status.WARN, detail))
    checks += [Check("inferred", Status.INFO, text) for text in ALWAYS_INFERRED]
    return checks


def run_checks(tracefs_override: Path | None = None) -> list[Check]:
    checks = [check_kernel()]
    tracefs_check, root = check_tracefs(tracefs_override)
    checks.append(tracefs_check)
    if root is not None:
        checks.extend(check_tracepoints(root))
    checks += [check_btf(), *check_capabilities(), check_bcc(), check_headers()]
    # Loading is only worth trying when nothing it depends on failed.
    if passed(checks) and root is not None:
        checks += [check_state_probe(root), check_probe_tiers(root), check_fentry()]
        checks += observation_checks(kernel.detect(root))
    return checks


def passed(checks: list[Check]) -> bool:
    return all(check.status is not Status.FAIL for check in checks)
