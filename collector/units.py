"""Kernel time as people read it: every layer may use these."""

from __future__ import annotations

import time

# Kernel timestamps are CLOCK_MONOTONIC; this turns them into wall-clock time for display.
MONOTONIC_TO_WALL_NS = time.time_ns() - time.monotonic_ns()


def format_duration(ns: int | None) -> str:
    """A short human duration (``12us``, ``3.4ms``, ``61s``); blank when unknown."""
    if ns is None:
        return ""
    for unit, scale in (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
        if ns >= scale:
            value = ns / scale
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return f"{ns}ns"
