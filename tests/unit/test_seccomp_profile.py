"""deploy/container/seccomp-profile.py: the runtime's default profile with bpf() and
perf_event_open() allowed, and nothing else loosened."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).parents[2] / "deploy" / "container" / "seccomp-profile.py"
SYNFIN_CALLS = {"bpf", "perf_event_open"}

# The shape of containers-common's and moby's default: the two calls allowed with
# CAP_SYS_ADMIN, refused with EPERM without it, among other calls' rules.
DEFAULT_LIKE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["bpf", "perf_event_open", "mount"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["bpf", "perf_event_open"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"},
    ],
}  # fmt: skip


def generate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, check=False
    )


def rules_naming(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [rule for rule in profile["syscalls"] if name in rule["names"]]


def test_the_two_calls_are_allowed_unconditionally_and_nothing_else_changes(tmp_path: Path) -> None:
    source = tmp_path / "default.json"
    source.write_text(json.dumps(DEFAULT_LIKE))
    result = generate(source)
    assert result.returncode == 0, result.stderr
    profile = json.loads(result.stdout)
    for name in SYNFIN_CALLS:
        (rule,) = rules_naming(profile, name)
        assert rule["action"] == "SCMP_ACT_ALLOW"
        assert not rule.get("includes") and not rule.get("excludes") and not rule.get("args")
    # mount stays allowed only with CAP_SYS_ADMIN; the other rules are untouched.
    (mount,) = rules_naming(profile, "mount")
    assert mount["includes"] == {"caps": ["CAP_SYS_ADMIN"]}
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert rules_naming(profile, "kexec_load") == [
        {"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}
    ]
    assert rules_naming(profile, "read") == DEFAULT_LIKE["syscalls"][:1]


@pytest.mark.skipif(
    not Path("/usr/share/containers/seccomp.json").exists(),
    reason="containers-common not installed",
)
def test_the_installed_runtime_default_loses_only_its_refusals_of_the_two_calls() -> None:
    installed = json.loads(Path("/usr/share/containers/seccomp.json").read_text())
    result = generate(Path("/usr/share/containers/seccomp.json"))
    assert result.returncode == 0, result.stderr
    profile = json.loads(result.stdout)
    before = {name for rule in installed["syscalls"] for name in rule["names"]}
    after = {name for rule in profile["syscalls"] for name in rule["names"]}
    assert before == after
    for name in SYNFIN_CALLS:
        assert [rule["action"] for rule in rules_naming(profile, name)] == ["SCMP_ACT_ALLOW"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ("{not json", "cannot read"), ('{"syscalls": []}', "no defaultAction")],
)
def test_a_bad_source_gets_one_line_and_exit_2(
    tmp_path: Path, content: str | None, message: str
) -> None:
    source = tmp_path / "profile.json"
    if content is not None:
        source.write_text(content)
    result = generate(source)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
