"""The synfin command line, driven as a person would: flags, exit codes, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from synfin.cli.main import main
from synfin.errors import EXIT_ENVIRONMENT

from .servers import bpf_programs, programs_released

SYNFIN = [str(Path(sys.executable).parent / "synfin")]


def test_watch_without_tracefs_names_the_mount_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["watch", "--tracefs", str(tmp_path)])
    assert result.exit_code == EXIT_ENVIRONMENT
    assert result.output.strip() == (
        f"synfin: error: tracefs is not mounted at {tmp_path} "
        "(fix: mount -t tracefs tracefs /sys/kernel/tracing)"
    )


@pytest.mark.bpf
def test_doctor_passes_here() -> None:
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(
        line.startswith("[ ok ] state probe: tcp_states.c compiled, attached") for line in lines
    )
    assert "[ ok ] probe tier: synfin run: lean (7 hooks: tp_btf, no timer or softirq" in (
        result.output
    )
    assert lines[-1] == "synfin can run here."
    assert not any(line.startswith("[FAIL]") for line in lines)


def loopback_connection(port: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    client.close()
    assert accepted.recv(10) == b""
    accepted.close()
    listener.close()


def start_synfin(*args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [*SYNFIN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    ready = process.stderr.readline()  # printed once the probe is attached
    assert "tracing TCP state changes" in ready, ready
    return process


# The documented transitions of one loopback connection, client closing first, as `watch`
# draws them: `~>` marks the step inferred from the peer's FIN.
LOOPBACK_STEPS = [
    "CLOSED -> LISTEN",
    "CLOSED -> SYN-SENT",
    "SYN-SENT -> ESTABLISHED",
    "LISTEN -> SYN-RCVD",
    "SYN-RCVD -> ESTABLISHED",
    "ESTABLISHED -> FIN-WAIT-1",
    "ESTABLISHED -> CLOSE-WAIT",
    "FIN-WAIT-1 -> FIN-WAIT-2",
    "CLOSE-WAIT -> LAST-ACK",
    "LAST-ACK -> CLOSED",
    "LISTEN -> CLOSED",
]


@pytest.mark.bpf
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_watch_shows_both_sides_and_ends_cleanly_on_a_signal(sig: signal.Signals) -> None:
    port = 31000 + sig
    programs_before = bpf_programs()
    process = start_synfin("watch", "--port", str(port))
    assert bpf_programs() > programs_before  # attached while it runs
    loopback_connection(port)
    time.sleep(0.5)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=10)

    assert process.returncode == 0
    lines = stdout.splitlines()
    assert lines[0].split()[:4] == ["TIME", "LOCAL", "REMOTE", "TRANSITION"]
    steps = [" ".join(line.split()[3:6]) for line in lines[1:] if " = " not in line]
    for expected in LOOPBACK_STEPS:
        assert expected in steps, (expected, stdout)
    assert any("FIN-WAIT-2 ~> TIME-WAIT" in line and "peer's FIN" in line for line in lines) or any(
        "FIN-WAIT-2 -> TIME-WAIT" in line for line in lines
    ), stdout
    verdicts = [line.split(" = ", 1)[1] for line in lines if " = " in line]
    assert sorted(v.split(":")[0] for v in verdicts) == [
        "active open, established; local graceful close",
        "listener",
        "passive open, established; remote graceful close",
    ]
    summary = stderr.strip().splitlines()[-1]
    assert summary.startswith("synfin watch: ")
    assert summary.endswith(" events, 0 lost; 2 connection(s) ended: 2 graceful close")
    assert programs_released(programs_before)  # nothing left attached


@pytest.mark.bpf
def test_watch_filters_by_state_and_host_on_a_live_connection() -> None:
    port = 31050
    process = start_synfin(
        "watch", "--port", str(port), "--state", "time-wait", "--host", "127.0.0.0/8"
    )
    loopback_connection(port)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    lines = stdout.splitlines()[1:]
    steps = [line for line in lines if " = " not in line]
    # The client's FIN-WAIT-2 -> TIME-WAIT (observed, or inferred from the server's FIN) and
    # nothing else: every other step of the connection is filtered out.
    assert len(steps) == 1 and "FIN-WAIT-2" in steps[0] and "TIME-WAIT" in steps[0], stdout
    verdicts = [line.split(" = ", 1)[1] for line in lines if " = " in line]
    assert all(v.startswith("active open") for v in verdicts), stdout
    summary = stderr.strip().splitlines()[-1]
    assert " events, 0 lost; " in summary and " 0 events" not in summary


@pytest.mark.bpf
def test_watch_json_lines() -> None:
    port = 31100
    process = start_synfin(
        "watch", "--json", "--port", str(port), "--family", "ipv4", "--duration", "2"
    )
    loopback_connection(port)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    connect = next(r for r in steps if r["to"] == "SYN-SENT")
    assert connect["from"] == "CLOSED"
    assert connect["pid"] == os.getpid()
    assert connect["owner_pid"] == os.getpid()
    assert connect["remote"] == f"127.0.0.1:{port}"
    assert connect["time_in_from_s"] is None
    child = next(r for r in steps if r["to"] == "SYN-RCVD")
    assert child["pid"] is None  # created in softirq
    assert child["observed"] is True and "SYN" in child["how"]
    assert {r["family"] for r in records} == {"ipv4"}
    verdicts = {r["open"]: r for r in records if r["type"] == "classified"}
    # The path so far when the client's socket went away; TIME-WAIT is there already when the
    # server's FIN and ACK travelled together.
    client_path = ["CLOSED", "SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2"]
    assert verdicts["active"]["path"] in (client_path, [*client_path, "TIME-WAIT"])
    assert (
        verdicts["passive"]["close"] == "graceful" and verdicts["passive"]["initiator"] == "remote"
    )


@pytest.mark.bpf
def test_record_then_replay_shows_the_same(tmp_path: Path) -> None:
    port = 31200
    recording = tmp_path / "one.jsonl"
    process = start_synfin("record", "-o", str(recording), "--port", str(port), "--duration", "2")
    loopback_connection(port)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert f"written to {recording}" in stderr

    result = CliRunner().invoke(main, ["replay", str(recording), "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    verdicts = sorted(
        (r["open"], r["result"], r["close"]) for r in records if r["type"] == "classified"
    )
    assert verdicts == [
        ("active", "established", "graceful"),
        ("listener", "other", None),
        ("passive", "established", "graceful"),
    ]
    assert "synfin replay: " in result.stderr
