"""The systemd unit: it must pass systemd's own check once pointed at a real install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.paths import REPO

UNIT = REPO / "deploy" / "synfin.service"


def test_unit_file_verifies(tmp_path: Path) -> None:
    venv_synfin = Path(sys.executable).parent / "synfin"
    unit = tmp_path / "synfin.service"
    unit.write_text(UNIT.read_text().replace("/opt/synfin/.venv/bin/synfin", str(venv_synfin)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_unit_bounds_capabilities_to_what_synfin_uses() -> None:
    text = UNIT.read_text()
    bounding = next(line for line in text.splitlines() if line.startswith("CapabilityBoundingSet="))
    assert set(bounding.split("=", 1)[1].split()) == {
        "CAP_BPF", "CAP_PERFMON", "CAP_SYSLOG", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE",
        "CAP_SYS_RESOURCE", "CAP_SETPCAP",
    }  # fmt: skip
    for hardening in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
    ):
        assert hardening in text
