"""The VM runner's own logic, without a VM: what a cached root depends on, and how the guest's
results become one line per check (tests/vm/runner.py; the VMs themselves run in
scripts/vm-test.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vm import runner


def test_a_cached_root_is_rebuilt_when_its_packages_change(monkeypatch: pytest.MonkeyPatch) -> None:
    before = runner.fingerprint("bookworm")
    assert runner.fingerprint("bookworm") == before
    assert runner.fingerprint("trixie") != before
    monkeypatch.setattr(runner, "PACKAGES", (*runner.PACKAGES, "strace"))
    assert runner.fingerprint("bookworm") != before


def test_each_reported_check_is_one_line_and_any_failure_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.txt"
    results.write_text(
        "kernel\tok\t6.1.0-40-amd64\ndoctor\tok\tsynfin can run here.\nfinished\tok\t9 s\n"
    )
    assert runner.report("bookworm", results)
    results.write_text(results.read_text() + "scenarios\tFAIL\texit 1: 2 failed\n")
    assert not runner.report("bookworm", results)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split()[:4] == ["bookworm", "6.1", "scenarios", "FAIL"]


def test_a_guest_that_reported_nothing_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.txt"
    results.write_bytes(b"\x00garbage without tabs\n")
    assert not runner.report("bullseye", results)
    assert "the guest reported nothing" in capsys.readouterr().out


def test_a_guest_that_stopped_before_finishing_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.txt"
    results.write_text("kernel\tok\t6.12.117\nsetup\tok\tready\n")
    assert not runner.report("trixie", results)
    assert capsys.readouterr().out.splitlines()[-1].split()[2:4] == ["finished", "FAIL"]


PANIC = """[   81.857074] Oops: int3: 0000 [#2] PREEMPT SMP NOPTI
[   81.857171] RIP: 0010:enqueue_timer+0x45/0x100
[   81.857354] Kernel panic - not syncing: Fatal exception in interrupt
"""


def test_a_guest_kernel_panic_is_named_from_the_console() -> None:
    assert runner.panic_of("[    1.0] systemd[1]: started\n") == ""
    assert (
        runner.panic_of(PANIC)
        == "Oops: int3: 0000 [#2] PREEMPT SMP NOPTI RIP: 0010:enqueue_timer+0x45/0x100"
    )


def test_a_failed_check_prints_why_from_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results, logs = tmp_path / "results.txt", tmp_path / "out"
    logs.mkdir()
    results.write_text("scenarios\tFAIL\texit 1\nsetup\tFAIL\texit 2\nfinished\tok\t\n")
    (logs / "scenarios.log").write_text(
        ".F\n    def test():\n>       assert 15.0 == 14.0\nE       assert 15.0 == 14.0\n"
        "FAILED tests/x.py::test - assert 15.0 == 14.0\n1 failed in 1s\n"
    )
    (logs / "setup.log").write_text("".join(f"step {n}\n" for n in range(20)))
    assert not runner.report("bookworm", results, logs)
    out = capsys.readouterr().out.splitlines()
    assert [line.split("| ", 1)[1] for line in out if "| " in line] == [
        "E       assert 15.0 == 14.0",
        "FAILED tests/x.py::test - assert 15.0 == 14.0",
        *(f"step {n}" for n in range(12, 20)),
    ]
