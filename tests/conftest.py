"""Shared by every test: tests that need root and BPF skip, with the reason, on machines that
cannot give them (in CI here they run). Unit tests need neither.
"""

from __future__ import annotations

import os

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
