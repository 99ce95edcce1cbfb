"""synfin's container image, built with podman (deploy/container/build.sh, cached by podman),
run the way a DaemonSet runs it: host PID and network, the kernel's files mounted read-only, a
read-only root, every capability dropped and only the documented set added
(collector/kernel/capabilities.py), the seccomp profile deploy/container/seccomp-profile.py
writes. With exactly that set every hook attaches and the counts equal the kernel's; with one
capability less, or under the runtime's default seccomp profile, synfin names what it lost."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from synfin.kernel import capabilities, privileges
from synfin.lab.hosts import HostPair
from synfin.lab.scenarios import SCENARIOS, snmp_counters
from tests.paths import REPO

from .servers import free_port
from .servers import scrape_samples as scrape

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

BUILD = REPO / "deploy" / "container" / "build.sh"
PROFILE = REPO / "deploy" / "container" / "seccomp-profile.py"
# As in deploy/kubernetes/daemonset.yaml: what synfin reads from the host.
READ_ONLY_MOUNTS = ("/sys/kernel/tracing", "/sys/kernel/btf", "/lib/modules", "/usr/src")
# No other test uses these; a rerun gets new ones (timewait sockets hold the old).
_ports = iter(range(38700, 38800, 2))


@pytest.fixture(scope="module")
def image() -> str:
    built = subprocess.run(
        ["bash", str(BUILD)], capture_output=True, text=True, timeout=1800, check=False
    )
    assert built.returncode == 0, built.stderr
    return built.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def seccomp_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seccomp") / "synfin-bpf.json"
    written = subprocess.run(["python3", str(PROFILE)], capture_output=True, text=True, check=True)
    path.write_text(written.stdout)
    return path


def podman_run(
    image: str,
    added: tuple[str, ...],
    seccomp: Path | None,
    *synfin: str,
    how: tuple[str, ...],
    mounted: tuple[str, ...] = READ_ONLY_MOUNTS,
) -> list[str]:
    """The run command as the docs give it (``how``: --rm, or -d --name); without a seccomp
    profile, the runtime's default applies."""
    mounts = [option for path in mounted for option in ("-v", f"{path}:{path}:ro")]
    return [
        "podman", "--runtime", "runc", "run", *how, "--pid", "host", "--network", "host",
        "--cap-drop", "ALL", "--cap-add", ",".join(added),
        *(["--security-opt", f"seccomp={seccomp}"] if seccomp else []),
        # No higher than the host's own limits: the container may not raise them.
        "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
        "--read-only", "--tmpfs", "/tmp", *mounts, image, *synfin,
    ]  # fmt: skip


def check_in_container(
    image: str,
    added: tuple[str, ...],
    seccomp: Path | None,
    mounted: tuple[str, ...] = READ_ONLY_MOUNTS,
) -> tuple[int, str]:
    """`synfin run --check` in a container: its exit status and what it said."""
    command = podman_run(image, added, seccomp, "run", "--check", "--ground-truth", "host",
                         how=("--rm",), mounted=mounted)  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    return result.returncode, result.stdout + result.stderr


@contextmanager
def serving(image: str, seccomp: Path, *synfin: str) -> Iterator[tuple[str, int]]:
    """synfin run in a detached container; yields (container, port) once /metrics answers, and
    stops it (SIGTERM) and removes it however the test ends."""
    port = free_port()
    name = f"synfin-test-{port}"
    command = podman_run(
        image, capabilities.CONTAINER_SET, seccomp, "run", "--listen-address",
        f"127.0.0.1:{port}", "--ground-truth", "host", *synfin, how=("-d", "--name", name),
    )  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                scrape(port)
                break
            except OSError:
                running = podman("inspect", "--format", "{{.State.Running}}", name)
                assert running == "true" and time.monotonic() < deadline, logs(name)
                time.sleep(0.5)
        yield name, port
    finally:
        subprocess.run(["podman", "stop", "--time", "20", name], capture_output=True, check=False)
        subprocess.run(["podman", "rm", "--force", name], capture_output=True, check=False)


def podman(*arguments: str) -> str:
    done = subprocess.run(["podman", *arguments], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def logs(name: str) -> str:
    done = subprocess.run(["podman", "logs", name], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def kernel_counters(hosts: HostPair) -> dict[str, dict[str, int]]:
    return {role: snmp_counters(host.namespace)
            for role, host in (("client", hosts.client), ("server", hosts.server))}  # fmt: skip


def status_field(pid: str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_with_exactly_the_documented_set_every_hook_attaches_and_counts_equal_the_kernels(
    hosts: HostPair, image: str, seccomp_profile: Path
) -> None:
    graceful = next(_ports)
    abort = graceful + 1
    labels = [f"--port-label={port}" for port in (graceful, abort)]
    with serving(image, seccomp_profile, *labels) as (name, port):
        said = logs(name)
        hooks = re.search(r"(\w+) tier, (\d+) hooks attached", said)
        assert hooks, said
        # Nothing lost with this set, on this host.
        assert not re.search(r"^synfin run: without ", said, re.MULTILINE), said
        samples = scrape(port)
        attached = {labels: value for (metric, labels), value in samples.items()
                    if metric == "synfin_probe_attached"}  # fmt: skip
        assert len(attached) == int(hooks[2]) and set(attached.values()) == {1.0}, attached

        # Once attached synfin keeps CAP_BPF alone (--ground-truth host), bounding set included.
        pid = podman("inspect", "--format", "{{.State.Pid}}", name)
        assert status_field(pid, "CapEff") == 1 << privileges.CAP_BPF
        assert status_field(pid, "CapBnd") == 1 << privileges.CAP_BPF

        before = kernel_counters(hosts)
        for _ in range(2):
            SCENARIOS["client-closes"].run(hosts, socket.AF_INET, graceful)
        SCENARIOS["reset-abort"].run(hosts, socket.AF_INET6, abort)
        after = kernel_counters(hosts)
        delta = {role: {key: after[role][key] - before[role][key] for key in after[role]}
                 for role in after}  # fmt: skip

        deadline = time.monotonic() + 30
        while total(samples := scrape(port), "synfin_tcp_closes_total", port=str(abort)) < 2:
            assert time.monotonic() < deadline, samples
            time.sleep(0.5)
        ours = {"synfin_tcp_connects_total": 0.0, "synfin_tcp_accepts_total": 0.0}
        for metric in ours:
            ours[metric] = sum(total(samples, metric, port=str(p)) for p in (graceful, abort))
        assert ours["synfin_tcp_connects_total"] == delta["client"]["ActiveOpens"] == 3
        assert ours["synfin_tcp_accepts_total"] == delta["server"]["PassiveOpens"] == 3
        closes = "synfin_tcp_closes_total"
        assert total(samples, closes, port=str(graceful), kind="graceful") == 4
        resets = total(samples, closes, port=str(abort), kind="abort") + total(
            samples, closes, port=str(abort), kind="reset_received"
        )
        assert resets == delta["client"]["EstabResets"] + delta["server"]["EstabResets"] == 2

        stopped = subprocess.run(["podman", "stop", "--time", "20", name], capture_output=True,
                                 text=True, check=False)  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped, probes detached" in logs(name)


# What synfin says without each capability of the container's set (--ground-truth host).
WITHOUT = {
    "CAP_BPF": (3, "synfin runs without CAP_BPF"),
    "CAP_PERFMON": (3, "synfin runs without CAP_PERFMON"),
    "CAP_SYSLOG": (0, "CAP_SYSLOG missing"),
    "CAP_SETPCAP": (0, "without CAP_SETPCAP: the bounding set keeps"),
}


def test_every_capability_of_the_set_is_named_here() -> None:
    assert set(WITHOUT) == set(capabilities.CONTAINER_SET)


@pytest.mark.parametrize("removed", sorted(WITHOUT))
def test_with_one_capability_less_synfin_names_what_it_lost(
    image: str, seccomp_profile: Path, removed: str
) -> None:
    added = tuple(name for name in capabilities.CONTAINER_SET if name != removed)
    status, said = check_in_container(image, added, seccomp_profile)
    expected_status, expected = WITHOUT[removed]
    assert status == expected_status, said
    assert expected in said, said
    if status:
        assert said.strip().splitlines()[-1].startswith("synfin: error: "), said


def test_with_the_full_set_the_check_attaches_every_hook_and_loses_nothing(
    image: str, seccomp_profile: Path
) -> None:
    status, said = check_in_container(image, capabilities.CONTAINER_SET, seccomp_profile)
    assert status == 0, said
    assert "without" not in said and "hooks attached and detached" in said, said


def test_under_the_runtimes_default_seccomp_profile_the_filter_is_named(image: str) -> None:
    status, said = check_in_container(image, capabilities.CONTAINER_SET, None)
    assert status == 3, said
    last = said.strip().splitlines()[-1]
    assert last.startswith("synfin: error: a seccomp filter refuses bpf()"), said
    assert "seccomp-profile.py" in last


def test_without_the_hosts_kernel_headers_synfin_says_to_mount_them(
    image: str, seccomp_profile: Path
) -> None:
    mounted = tuple(path for path in READ_ONLY_MOUNTS if path not in ("/lib/modules", "/usr/src"))
    status, said = check_in_container(image, capabilities.CONTAINER_SET, seccomp_profile, mounted)
    assert status == 3, said
    error = next(line for line in said.splitlines() if line.startswith("synfin: error: "))
    assert "no kernel headers at /lib/modules/" in error, said
    assert "mount the host's /lib/modules and /usr/src read-only" in error
