"""The lab: the load scenarios against synfin's counters and the kernel's, and `synfin lab`
leaving nothing behind."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from synfin.engine.classify import Ending, classify
from synfin.engine.states import State, documented
from synfin.kernel import counters
from synfin.kernel.sock_diag import take
from synfin.kernel.state_probe import ProbeOptions, TcpProbe
from synfin.lab.hosts import HostPair
from synfin.lab.storms import STORMS, tcp_ext
from synfin.records.events import Fact

pytestmark = [pytest.mark.bpf, pytest.mark.netns]
SYNFIN = str(Path(sys.executable).parent / "synfin")
CONNECTED, ACCEPTED = 0, 1


def storm_counters(hosts: HostPair, name: str, port: int, count: int) -> counters.Counters:
    with TcpProbe(ProbeOptions(stream_events=False)) as probe:
        probe.set_labels([port])
        STORMS[name].run(hosts, socket.AF_INET, port, count)
        return counters.read(probe)


def opens(recorded: counters.Counters, kind: int, port: int) -> int:
    return sum(n for (k, _family, p), n in recorded.opens.items() if k == kind and p == port)


def closes(recorded: counters.Counters, port: int) -> dict[tuple[str | None, str | None], int]:
    found: dict[tuple[str | None, str | None], int] = {}
    for (facts, _family, p), n in recorded.endings.items():
        verdict = classify(Ending(Fact(facts)))
        if p == port and verdict.result == "established":
            key = (verdict.initiator, verdict.close)
            found[key] = found.get(key, 0) + n
    return found


def test_time_wait_storm(hosts: HostPair) -> None:
    port, count = 37000, 40
    recorded = storm_counters(hosts, "time-wait-storm", port, count)
    assert opens(recorded, CONNECTED, port) == opens(recorded, ACCEPTED, port) == count
    assert closes(recorded, port) == {("local", "graceful"): count, ("remote", "graceful"): count}
    client_ns = {
        Path(f"/run/netns/{hosts.client.namespace}").stat().st_ino: Path(
            f"/run/netns/{hosts.client.namespace}"
        )
    }
    in_time_wait = [
        s
        for s in take(client_ns)
        if s.dport == port and documented(s.state) in (State.TIME_WAIT, State.FIN_WAIT_2)
    ]
    assert len(in_time_wait) == count


def test_syn_flood_leaves_half_open_requests(hosts: HostPair) -> None:
    port, count = 37100, 40
    before = tcp_ext(hosts.server.namespace)
    recorded = storm_counters(hosts, "syn-flood", port, count)
    after = tcp_ext(hosts.server.namespace)
    synacks = sum(n for (kind, _state), n in recorded.retransmits.items() if kind == 1)
    assert synacks >= count  # each half-open request retransmitted its SYN-ACK at least once
    assert opens(recorded, ACCEPTED, port) == 0
    assert after["TCPSynRetrans"] - before["TCPSynRetrans"] >= count  # the kernel agrees


def test_listen_overflow(hosts: HostPair) -> None:
    port, count = 37200, 10
    before = tcp_ext(hosts.server.namespace)
    recorded = storm_counters(hosts, "listen-overflow", port, count)
    after = tcp_ext(hosts.server.namespace)
    assert opens(recorded, ACCEPTED, port) == 2  # backlog 1 holds two
    assert after["ListenOverflows"] - before["ListenOverflows"] > 0
    assert sum(n for (kind, _state), n in recorded.retransmits.items() if kind == 0) > 0


def namespaces_left() -> list[str]:
    listed = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith("synlab")]


def test_lab_runs_a_scenario_and_cleans_up() -> None:
    result = subprocess.run(
        [SYNFIN, "lab", "refused", "--port", "37300"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        "synfin lab: refused (ipv4, port 37300) done; synfin should report:",
        "  client: CLOSED -> SYN-SENT -> CLOSED (active open, refused)",
    ]
    assert namespaces_left() == []


def test_lab_trace_draws_each_scenario_with_its_checks() -> None:
    result = subprocess.run(
        [SYNFIN, "lab", "server-closes", "refused", "--trace", "--port", "37350"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    normal, refused = out.split("synfin lab: refused", 1)
    # The seeds' teardown, server first: FIN seq=u, ACK seq=v ack=u+1, FIN seq=w, last ACK.
    for arrow in ("◀───────────────────────── FIN+ACK seq=u ───│  FIN-WAIT-1",
                  "│─── ACK seq=v ack=u+1 ─────────────────────▶│  FIN-WAIT-2",
                  "│─── ACK seq=x+1 ack=y+1 ───────────────────▶│  ESTABLISHED"):  # fmt: skip
        assert arrow in normal, normal
    assert "✓ four-way teardown: four segments (server first): FIN, ACK, FIN, ACK" in normal
    assert "RST+ACK seq=0 ack=x+1" in refused and "✗ three-way handshake: refused" in refused
    assert namespaces_left() == []


def test_lab_loop_stops_on_sigterm_and_cleans_up() -> None:
    process = subprocess.Popen(
        [SYNFIN, "lab", "client-closes", "--loop", "--per-minute", "600", "--port", "37400"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert "done" in process.stdout.readline()
    assert namespaces_left()  # alive while it loops
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert namespaces_left() == []


def test_lab_names_unknown_scenarios() -> None:
    result = subprocess.run(
        [SYNFIN, "lab", "teardown-dance"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "Invalid value for 'SCENARIO...': 'teardown-dance' is not one of" in result.stderr
