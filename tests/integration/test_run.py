"""`synfin run` as an operator meets it: TLS and basic auth, capabilities, signals, settings."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import bcrypt
import pytest

from synfin.kernel.features import detect

from .servers import SYNFIN, bpf_programs, free_port, programs_released, synfin_run

CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_BPF = 19, 21, 39


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, check=True,
    )  # fmt: skip
    return cert, key


def web_config(folder: Path, tls: tuple[Path, Path] | None, users: dict[str, str]) -> Path:
    lines = []
    if tls:
        lines += ["tls_server_config:", f"  cert_file: {tls[0]}", f"  key_file: {tls[1]}"]
    if users:
        lines.append("basic_auth_users:")
        lines += [
            f"  {user}: '{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()}'"
            for user, pw in users.items()
        ]
    path = folder / "web.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.bpf
def test_tls_and_basic_auth_with_a_real_client(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    config = web_config(tmp_path, tls_files, {"prometheus": "s3cret"})
    cert = str(tls_files[0])
    with synfin_run("--ground-truth=host", f"--web-config-file={config}") as (_daemon, port):
        url = f"https://127.0.0.1:{port}/metrics"
        assert curl("--cacert", cert, "-u", "prometheus:s3cret", url).stdout == "200"
        assert curl("--cacert", cert, "-u", "prometheus:wrong", url).stdout == "401"
        assert curl("--cacert", cert, url).stdout == "401"
        plain = curl(f"http://127.0.0.1:{port}/metrics")
        assert plain.returncode != 0 and plain.stdout == "000"  # plain HTTP gets no answer
        assert (
            curl("--cacert", cert, "-u", "prometheus:s3cret", url).stdout == "200"
        )  # still serving


def capabilities_of(pid: int) -> int:
    """The effective capabilities every thread of ``pid`` has: capabilities are per thread,
    so one started before the drop would keep them all. Fails if the threads differ."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = (task / "status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("CapEff:"))
        found.add(int(line.split()[1], 16))
    assert len(found) == 1, f"threads with different capabilities: {sorted(map(hex, found))}"
    return found.pop()


@pytest.mark.bpf
@pytest.mark.parametrize(
    ("scope", "kept"),
    [("all", {CAP_BPF, CAP_SYS_ADMIN, CAP_SYS_PTRACE}), ("host", {CAP_BPF}), ("off", {CAP_BPF})],
)
def test_serving_keeps_only_the_capabilities_it_needs(scope: str, kept: set[int]) -> None:
    with synfin_run(f"--ground-truth={scope}", "--ground-truth-interval=1") as (daemon, port):
        assert capabilities_of(daemon.pid) == sum(1 << cap for cap in kept)
        scrape = curl(f"http://127.0.0.1:{port}/metrics")
        assert scrape.stdout == "200"  # maps are still readable
        if scope != "off":
            # Samples taken after the drop work too (the host's own namespace needs no setns).
            time.sleep(2.5)
            metrics = subprocess.run(
                ["curl", "-s", f"http://127.0.0.1:{port}/metrics"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            assert "synfin_kernel_sample_success 1.0" in metrics


def hooks_attached(port: int) -> int:
    """How many hooks a serving synfin says are attached (synfin_probe_attached at 1)."""
    scrape = subprocess.run(
        ["curl", "-s", f"http://127.0.0.1:{port}/metrics"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sum(
        line.startswith("synfin_probe_attached{") and line.endswith(" 1.0")
        for line in scrape.stdout.splitlines()
    )


@pytest.mark.bpf
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_signals_detach_and_exit_0(sig: signal.Signals) -> None:
    before = bpf_programs()
    with synfin_run("--ground-truth=off") as (daemon, port):
        assert len(bpf_programs() - before) == hooks_attached(port) > 0
        daemon.send_signal(sig)
        assert daemon.wait(timeout=10) == 0
    assert programs_released(before)


@pytest.mark.bpf
def test_sigkill_leaves_nothing_attached() -> None:
    before = bpf_programs()
    with synfin_run("--ground-truth=off") as (daemon, _port):
        daemon.kill()
        daemon.wait(timeout=10)
    assert programs_released(before)  # nothing pinned: the programs die with the process


@pytest.mark.bpf
def test_only_metrics_is_served() -> None:
    with synfin_run("--ground-truth=off") as (_daemon, port):
        assert curl(f"http://127.0.0.1:{port}/metrics").stdout == "200"
        assert curl(f"http://127.0.0.1:{port}/").stdout == "200"
        assert curl(f"http://127.0.0.1:{port}/debug").stdout == "404"


@pytest.mark.bpf
@pytest.mark.parametrize(
    ("tier", "expected"), [("auto", "lean"), ("lean", "lean"), ("timers", "timers")]
)
def test_check_attaches_detaches_and_says_so(tier: str, expected: str) -> None:
    with synfin_run("--ground-truth=off", f"--probe-tier={tier}") as (_daemon, port):
        hooks = hooks_attached(port)
    result = subprocess.run(
        [SYNFIN, "run", "--check", f"--probe-tier={tier}"], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0
    *lost, said = result.stderr.strip().splitlines()
    assert said == (
        f"synfin run --check: configuration OK; {expected} tier, {hooks} hooks attached "
        "and detached"
    )
    assert hooks == {"lean": 7, "timers": 11}[expected]
    # One line for each capability this kernel lacks, naming it (none on this machine).
    missing = [c.name for c in detect().capabilities if not c.available]
    assert [line.split(":")[1].removeprefix(" without ") for line in lost] == missing


@pytest.mark.bpf
def test_config_file_and_environment(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "synfin.yml"
    config.write_text(
        f"listen_address: 127.0.0.1:{port}\nport_label: [80, 443]\nground_truth: 'off'\n"
    )
    env = os.environ | {"SYNFIN_CONFIG": str(config), "SYNFIN_GROUND_TRUTH": "host"}
    process = subprocess.Popen([SYNFIN, "run"], env=env, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    try:
        line = process.stderr.readline()
        assert f"serving http://127.0.0.1:{port}/metrics" in line  # from the file
        scrape = subprocess.run(
            ["curl", "-s", f"http://127.0.0.1:{port}/metrics"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert "synfin_kernel_namespaces 1.0" in scrape.stdout  # the variable beat the file
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()
