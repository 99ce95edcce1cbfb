"""synfin's table of capabilities (collector/kernel/capabilities.py) against the places that
grant them, and doctor's line for each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from synfin.kernel import capabilities, privileges
from synfin.kernel.doctor import Status, check_capabilities
from tests.paths import REPO

UNIT = REPO / "deploy" / "synfin.service"
SECURITY = REPO / "docs" / "security.md"
ALL = sum(1 << use.bit for use in capabilities.USES)


def bits(*names: str) -> int:
    return sum(1 << capabilities.BY_NAME[name].bit for name in names)


def statuses(caps: int, release: str = "6.1.0") -> dict[str, Status]:
    return {
        check.name.removeprefix("capability "): check.status
        for check in check_capabilities(caps, release)
    }


def test_the_unit_bounds_synfin_to_exactly_the_capabilities_it_uses() -> None:
    line = next(
        line for line in UNIT.read_text().splitlines() if line.startswith("CapabilityBoundingSet=")
    )
    assert set(line.split("=", 1)[1].split()) == set(capabilities.BY_NAME)


def rows_of(document: Path) -> dict[str, list[str]]:
    return {
        match[1]: [cell.strip() for cell in match[0].strip("|").split("|")]
        for match in re.finditer(r"^\| `(CAP_[A-Z_]+)` \|.*$", document.read_text(), re.MULTILINE)
    }


def test_the_readme_gives_the_same_table() -> None:
    assert rows_of(REPO / "README.md") == rows_of(SECURITY)


def test_every_capability_has_a_row_in_the_security_docs_saying_where_it_is_granted() -> None:
    rows = rows_of(SECURITY)
    assert set(rows) == set(capabilities.BY_NAME)
    for name, (_, why, lost, host, container) in rows.items():
        assert why and lost and host == "yes", name
        assert (container == "yes") == (name in capabilities.CONTAINER_SET), name


def test_the_names_and_bits_agree_with_privileges() -> None:
    for use in capabilities.USES:
        assert privileges.CAP_NAMES[use.bit] == use.name


def test_with_every_capability_doctor_says_what_each_gives() -> None:
    assert set(statuses(ALL).values()) == {Status.OK}


def test_without_the_loading_pair_doctor_fails_on_each_and_only_warns_of_the_rest() -> None:
    said = statuses(bits("CAP_SYSLOG", "CAP_SETPCAP"))
    assert said["CAP_BPF"] is said["CAP_PERFMON"] is Status.FAIL
    assert said["CAP_SYS_ADMIN"] is said["CAP_SYS_PTRACE"] is Status.WARN


def test_cap_sys_admin_stands_in_for_the_loading_pair() -> None:
    said = statuses(bits("CAP_SYS_ADMIN"))
    assert said["CAP_BPF"] is said["CAP_PERFMON"] is Status.INFO


@pytest.mark.parametrize(
    ("release", "status"), [("5.10.0-30-amd64", Status.WARN), ("6.1.0", Status.INFO)]
)
def test_cap_sys_resource_matters_only_before_linux_5_11(release: str, status: Status) -> None:
    assert statuses(ALL & ~bits("CAP_SYS_RESOURCE"), release)["CAP_SYS_RESOURCE"] is status


def test_a_missing_capability_names_what_is_lost_and_the_fix() -> None:
    (check,) = [
        check
        for check in check_capabilities(ALL & ~bits("CAP_SETPCAP"), "6.1.0")
        if check.name == "capability CAP_SETPCAP"
    ]
    assert check.detail.startswith("missing: the bounding set keeps")
    assert check.fix and "add CAP_SETPCAP" in check.fix
