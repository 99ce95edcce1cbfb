"""Shared by every test: tests that need root and BPF skip, with the reason, on machines that
cannot give them (in CI here they run). Unit tests need neither.
"""

from __future__ import annotations

import os
import sys

import pytest


def bpf_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to load BPF programs and create network namespaces"
    try:
        import bcc  # noqa: F401, PLC0415
    except ImportError:
        return "bcc is not importable (run scripts/setup.sh and use its .venv)"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = bpf_unavailable_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("bpf") or item.get_closest_marker("netns"):
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A try that failed and is run again (scripts/test.sh's --reruns) says why, in the log:
    a flaky test passes on its rerun, and without this the reason is lost."""
    if report.outcome == "rerun" and report.longrepr is not None:
        lines = [line[1:].strip() for line in report.longreprtext.splitlines() if line[:2] == "E "]
        # The message's first line, and the comparison pytest explains (a long message, such as
        # a whole ladder, would hide it).
        shown = [*lines[:1], *[line for line in lines[1:] if line.startswith("assert ")][:1]]
        reason = " | ".join(shown) or report.longreprtext.splitlines()[-1]
        print(f"\nRERUN {report.nodeid}: {reason[:1500]}", file=sys.stderr)
