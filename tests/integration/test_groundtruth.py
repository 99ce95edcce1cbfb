"""The ground-truth sampler when namespaces come and go: one that vanishes between listing and
asking costs only its own share of the sample (issue 14, defect 8)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from synfin.exporter.groundtruth import Sampler
from synfin.kernel.procfs import PROC, ProcNet

pytestmark = pytest.mark.netns  # entering a namespace needs root


class ListedThenGone(Sampler):
    """Lists this namespace and one whose mount disappeared after the listing."""

    def _namespaces(self) -> dict[int, Path]:
        own = Path("/proc/thread-self/ns/net")
        return {os.stat(own).st_ino: own, 1: Path("/run/netns/synfin-vanished-namespace")}


def test_a_vanished_namespace_costs_only_its_own_share() -> None:
    sampler = ListedThenGone(scope="all")
    sampler.refresh()
    sample = sampler.latest
    assert sample.ok, sample.error
    assert sample.namespaces == 1
    assert sample.snmp["ActiveOpens"] <= ProcNet(PROC).tcp()["ActiveOpens"]
    assert sum(sample.sockets.values()) >= 0
