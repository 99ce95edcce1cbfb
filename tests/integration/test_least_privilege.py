"""synfin under the capability bounding set of deploy/synfin.service, applied with setpriv (this
machine's PID 1 is not systemd; the VM runner's lab starts the unit itself): every hook
attaches; and with one capability taken away, synfin names it and what is lost."""

from __future__ import annotations

import subprocess

import pytest

from tests.paths import REPO

pytestmark = pytest.mark.bpf

UNIT = REPO / "deploy" / "synfin.service"
SYNFIN = str(REPO / ".venv" / "bin" / "synfin")


def unit_capabilities() -> list[str]:
    line = next(
        line for line in UNIT.read_text().splitlines() if line.startswith("CapabilityBoundingSet=")
    )
    return [name.removeprefix("CAP_").lower() for name in line.split("=", 1)[1].split()]


def run_check(capabilities: list[str]) -> str:
    bounding = ",".join(["-all", *(f"+{name}" for name in capabilities)])
    result = subprocess.run(
        ["setpriv", "--bounding-set", bounding, SYNFIN, "run", "--check"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_the_units_capabilities_attach_every_hook() -> None:
    said = run_check(unit_capabilities())
    assert "lean tier, 7 hooks attached and detached" in said
    assert "without" not in said, said


def test_without_cap_syslog_synfin_names_it_and_what_is_lost() -> None:
    said = run_check([name for name in unit_capabilities() if name != "syslog"])
    lost = [line for line in said.splitlines() if "without" in line]
    assert any("without timewait and request timers" in line for line in lost), said
    assert all("CAP_SYSLOG missing" in line for line in lost), said
    assert "timers tier" in said.splitlines()[-1]
