"""What synfin says it can observe on older kernels, from their tracepoint formats
(tests/fixtures/tracefs/, written by make.py from each release's definitions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synfin.kernel.doctor import check_tracepoints
from synfin.kernel.features import detect
from tests.paths import FIXTURES

FORMATS = FIXTURES / "tracefs"
VMLINUX = Path("/sys/kernel/btf/vmlinux")


def features(version: str, tmp_path: Path, btf: bool = True) -> dict[str, str]:
    """capability -> "" when available, else the reason synfin gives."""
    found = detect(
        FORMATS / version, VMLINUX if btf else tmp_path / "no-btf", release=f"{version}.0"
    )
    return {c.name: "" if c.available else c.reason for c in found.capabilities} | {
        f"-D{k}": str(v)
        for k, v in found.defines.items()
        if k.startswith(("RESET_", "RETRANSMIT_", "HAVE_"))
    }


def test_the_fixtures_are_what_make_py_writes(tmp_path: Path) -> None:
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("make", FORMATS / "make.py")
    assert spec and spec.loader
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    for version, tracepoints in make.KERNELS.items():
        for path, fields in tracepoints.items():
            recorded = (FORMATS / version / "events" / path / "format").read_text()
            assert recorded == make.render(path.split("/")[1], fields), f"{version} {path}"


@pytest.mark.parametrize("version", ["4.16", "5.4", "5.15", "6.1"])
def test_every_kernel_has_what_the_state_probe_needs(version: str) -> None:
    checks = {check.name: check for check in check_tracepoints(FORMATS / version)}
    assert checks["state tracepoint"].status.value == "ok", checks["state tracepoint"].detail
    assert checks["tcp tracepoints"].status.value == "ok"


def test_linux_4_16(tmp_path: Path) -> None:
    seen = features("4.16", tmp_path, btf=False)  # BTF in sysfs arrived in 5.4
    assert seen["event stream"] == "the BPF ring buffer: needs Linux >= 5.8"
    assert seen["process context"] == "raw tracepoints: needs Linux >= 4.17"
    assert seen["timewait and request timers"] == "raw tracepoints: needs Linux >= 4.17"
    assert "has no BTF" in seen["network namespace"]
    assert seen["resets"] == ""  # counted, without the state or the reason
    assert (
        seen["-DRESET_HAS_STATE"],
        seen["-DRESET_HAS_REASON"],
        seen["-DRETRANSMIT_HAS_STATE"],
    ) == ("0", "0", "0")
    assert (seen["-DHAVE_CGROUP_ID"], seen["-DHAVE_PROBE_READ_KERNEL"]) == ("0", "0")


def test_linux_5_4(tmp_path: Path) -> None:
    seen = features("5.4", tmp_path)
    assert seen["event stream"] == "the BPF ring buffer: needs Linux >= 5.8"
    for name in (
        "process context",
        "network namespace",
        "socket fields",
        "timewait and request timers",
        "resets",
    ):
        assert seen[name] == "", name
    assert (seen["-DRESET_HAS_STATE"], seen["-DRESET_HAS_REASON"], seen["-DRESET_SOCKADDR"]) == (
        "1",
        "0",
        "0",
    )
    assert seen["-DHAVE_PROBE_READ_KERNEL"] == "0"  # bpf_probe_read stands in


@pytest.mark.parametrize("version", ["5.15", "6.1"])
def test_linux_5_15_and_6_1_observe_everything_but_socketless_resets(
    version: str, tmp_path: Path
) -> None:
    seen = features(version, tmp_path)
    # Found in a Debian 12 VM (docs/kernels.md): a SYN to a closed port passed unseen.
    assert seen.pop("socketless resets") == (
        "tcp:tcp_send_reset fires only for a full socket before Linux 6.10"
    )
    assert all(seen[name] == "" for name in seen if not name.startswith("-D")), seen
    assert (seen["-DRESET_HAS_STATE"], seen["-DRESET_HAS_REASON"], seen["-DRESET_SOCKADDR"]) == (
        "1",
        "0",
        "0",
    )
    assert seen["-DHAVE_RING_BUFFER"] == "1"
    assert seen["-DRETRANSMIT_HAS_ERR"] == "0"  # err arrived in 6.18


def test_this_kernel_reports_retransmit_errors() -> None:
    """6.18's tcp_retransmit_skb fires for failed retransmissions too: synfin filters them."""
    found = detect()
    assert found.defines["RETRANSMIT_HAS_ERR"] == (
        1
        if "err" in Path("/sys/kernel/tracing/events/tcp/tcp_retransmit_skb/format").read_text()
        else 0
    )
