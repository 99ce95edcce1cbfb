"""Naming why the kernel refuses bpf() or perf_event_open(): a seccomp filter, or missing
capabilities (collector/kernel/refusals.py). The container tests drive a real seccomp filter."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from synfin.kernel import privileges, refusals

ALL_NEEDED = 1 << privileges.CAP_BPF | 1 << privileges.CAP_PERFMON


def refused_with(
    monkeypatch: pytest.MonkeyPatch, *, bpf: int, perf: int, caps: int, seccomp: int
) -> tuple[str, str] | None:
    monkeypatch.setattr(refusals, "try_bpf", lambda: bpf)
    monkeypatch.setattr(refusals, "try_perf_event_open", lambda: perf)
    monkeypatch.setattr(privileges, "effective", lambda: caps)
    monkeypatch.setattr(refusals, "seccomp_mode", lambda: seccomp)
    return refusals.refusal()


def test_a_seccomp_filter_is_named_with_the_profile_that_fixes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem, fix = refused_with(
        monkeypatch, bpf=errno.EPERM, perf=errno.EPERM, caps=ALL_NEEDED, seccomp=2
    ) or ("", "")
    assert problem.startswith("a seccomp filter refuses bpf() and perf_event_open()")
    assert "deploy/container/seccomp-profile.py" in fix


def test_missing_capabilities_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    problem, fix = refused_with(
        monkeypatch, bpf=errno.EPERM, perf=errno.EACCES, caps=1 << privileges.CAP_BPF, seccomp=2
    ) or ("", "")
    assert problem.endswith("it runs without CAP_PERFMON")
    assert "add CAP_PERFMON" in fix


def test_a_refusal_despite_the_capabilities_points_at_a_security_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem, _ = refused_with(monkeypatch, bpf=errno.EPERM, perf=0, caps=ALL_NEEDED, seccomp=0) or (
        "",
        "",
    )
    assert problem.startswith("the kernel refuses bpf() to synfin although")


def test_other_errors_are_not_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    # EINVAL (an old kernel), ENOSYS: not a matter of permission, the loader explains those.
    assert refused_with(monkeypatch, bpf=errno.EINVAL, perf=errno.ENOSYS, caps=0, seccomp=2) is None


def test_the_seccomp_mode_is_read_from_the_status_file(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython3\nSeccomp:\t2\nSeccomp_filters:\t1\n")
    assert refusals.seccomp_mode(status) == 2
    status.write_text("Name:\tpython3\n")
    assert refusals.seccomp_mode(status) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the real calls need root")
def test_as_root_both_real_calls_succeed_and_nothing_is_refused() -> None:
    assert refusals.try_bpf() == 0
    assert refusals.try_perf_event_open() == 0
    assert refusals.refusal() is None
