"""synfin under the capability bounding set of deploy/synfin.service, applied with setpriv (this
machine's PID 1 is not systemd; the VM runner's lab starts the unit itself): every hook
attaches; and with one capability taken away, synfin names it and what is lost."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from synfin.kernel import privileges
from tests.paths import REPO

from .servers import free_port

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


def test_without_cap_setpcap_synfin_says_the_bounding_set_stays() -> None:
    said = run_check([name for name in unit_capabilities() if name != "setpcap"])
    assert "without CAP_SETPCAP: the bounding set keeps what serving does not need" in said, said
    assert "lean tier, 7 hooks attached and detached" in said


def test_serving_without_cap_setpcap_still_cuts_the_other_sets() -> None:
    """The bounding set cannot be cut without CAP_SETPCAP; the effective and permitted sets
    are, and synfin says which stayed."""
    kept = [name for name in unit_capabilities() if name != "setpcap"]
    bounding = ",".join(["-all", *(f"+{name}" for name in kept)])
    port = free_port()
    process = subprocess.Popen(
        ["setpriv", "--bounding-set", bounding, SYNFIN, "run", "--listen-address",
         f"127.0.0.1:{port}", "--ground-truth", "host"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        said = [process.stderr.readline() for _ in range(2)]
        assert "serving" in said[0], said
        assert "without CAP_SETPCAP: the bounding set keeps" in said[1], said
        status = Path(f"/proc/{process.pid}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert int(fields["CapEff"], 16) == int(fields["CapPrm"], 16) == 1 << privileges.CAP_BPF
        assert int(fields["CapBnd"], 16) & 1 << privileges.CAP_SYS_ADMIN  # not cut: it says so
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()
