"""The lean tier (tp_btf, a cookie-indexed table, no timer or softirq hooks) in the real kernel: the
same counts as the timers tier in every scenario, and each detection that replaces a hook
driven for real (probes/tcp_states/without_timers.c)."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from synfin.engine.states import KernelState
from synfin.exporter.kernel_metrics import KernelCollector, Labelling
from synfin.exporter.timewait_census import HANDOVERS
from synfin.kernel import counters as counters_module
from synfin.kernel import tracing_loader
from synfin.kernel.features import detect
from synfin.kernel.loader import ProbeError
from synfin.kernel.namespaces import entered, entered_path
from synfin.kernel.procfs import ProcNet
from synfin.kernel.sock_diag import namespaces
from synfin.kernel.state_probe import LEAN, TIMERS, ProbeOptions, TcpProbe
from synfin.lab.hosts import HostPair
from synfin.lab.plays import kill_timewait, listen, nft, pair, read_to_eof
from synfin.lab.scenarios import SCENARIOS
from synfin.records.addresses import AF_INET
from synfin.records.counters import Counters

from .servers import scrape_samples as scrape
from .servers import synfin_run

pytestmark = [pytest.mark.bpf, pytest.mark.netns]


@pytest.fixture(autouse=True)
def no_timewait_left(hosts: HostPair) -> Iterator[None]:
    """Kill the timewait sockets a test leaves: expiring a minute later, during other tests,
    they would be events those tests cannot tell from their own."""
    yield
    for host in (hosts.client, hosts.server):
        subprocess.run(
            ["ip", "netns", "exec", host.namespace, "ss", "-K", "-tn", "state", "time-wait"],
            capture_output=True, check=False,
        )  # fmt: skip


# Each scenario on its own labelled port, so both tiers' counts can be read per scenario. The
# lean tests use ports 39000-39999, which no other test does.
COMPARED = {
    "client-closes": 39000,
    "server-closes": 39001,
    "half-close": 39002,
    "refused": 39003,
    "reset-abort": 39004,
    "unread-data-abort": 39005,
    "syn-timeout": 39006,
}
# Not simultaneous-close: whether both FINs cross depends on two retransmission timers
# expiring in one tick (synfin.lab.plays), so either tier may see one end close first.
_attempts = iter(range(5))  # a rerun (scripts/test.sh) must not reuse a port
OUTCOMES = ("synfin_tcp_connects_total", "synfin_tcp_accepts_total", "synfin_tcp_closes_total")


@contextmanager
def counting(tier: str, ports: tuple[int, ...] = ()) -> Iterator[TcpProbe]:
    with TcpProbe(ProbeOptions(stream_events=False, tier=tier)) as probe:
        assert probe.tier == tier
        probe.set_labels(ports)
        yield probe


def outcomes(
    counters: Counters, scenarios: dict[int, str]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every connects/accepts/closes sample as synfin run would export it, its port label
    replaced by the scenario that used the port."""
    found = {}
    for metric in KernelCollector(lambda: counters, Labelling(ports=True)).collect():
        for sample in metric.samples:
            if sample.name in OUTCOMES and sample.value:
                if sample.labels["port"] == "other":
                    continue  # not a scenario's connection (the host may have others)
                labels = {**sample.labels, "port": scenarios.get(int(sample.labels["port"]), "?")}
                found[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return found


def expected_outcomes() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What each scenario's two ends must count (synfin.lab.scenarios), by port."""
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def add(name: str, **labels: str) -> None:
        key = (name, tuple(sorted({**labels, "family": "ipv4"}.items())))
        expected[key] = expected.get(key, 0) + 1

    for name in COMPARED:
        scenario = SCENARIOS[name]
        add("synfin_tcp_connects_total", port=name, result=scenario.client.result)
        if scenario.server is not None:
            add("synfin_tcp_accepts_total", port=name)
        for end in (scenario.client, scenario.server):
            if end is not None and end.result == "established":
                add("synfin_tcp_closes_total", port=name, initiator=end.initiator or "",
                    kind=end.close or "")  # fmt: skip
    return expected


def test_both_tiers_count_every_scenario_as_the_scenarios_say(hosts: HostPair) -> None:
    """Refused, timed out, reset, aborted (sk_err), half-closed (sk_shutdown) and the rest:
    the lean tier's counts equal the timers tier's and the scenarios' expectations."""
    counted = {}
    attempt = next(_attempts)
    for offset, tier in enumerate((LEAN, TIMERS)):
        # Ports of their own per tier and attempt: a server's timewait socket keeps its port.
        ports = {port + 100 * offset + 20 * attempt: name for name, port in COMPARED.items()}
        with counting(tier, tuple(ports)) as probe:
            for port, name in ports.items():
                SCENARIOS[name].run(hosts, socket.AF_INET, port)
            time.sleep(0.3)  # the last sockets are destroyed
            counted[tier] = outcomes(counters_module.read(probe), ports)
    assert counted[LEAN] == counted[TIMERS] == expected_outcomes()


def handovers(counters: Counters) -> int:
    return sum(n for (counter, _family), n in counters.timewait.items() if counter in HANDOVERS)


def everywhere(read: Callable[[ProcNet], int]) -> int:
    """``read`` summed over every network namespace (synfin counts host-wide, whatever else
    runs meanwhile)."""
    total = 0
    for path in namespaces().values():
        try:
            with entered_path(path):
                total += read(ProcNet())
        except FileNotFoundError:
            continue  # gone meanwhile
    return total


def timewaits_scheduled() -> int:
    """TcpExt TW + TWKilled: the timewait sockets the kernel scheduled."""
    return everywhere(lambda net: (ext := net.tcp_ext())["TW"] + ext["TWKilled"])


_ports = iter(range(39300, 39600, 30))  # a rerun gets new ports: timewait sockets hold old ones


def test_every_hand_over_is_found_in_the_bucket(hosts: HostPair) -> None:
    """Client and server closing first, orphaned or not: hand-overs = the kernel's count."""
    first = next(_ports)

    def both() -> tuple[int, int]:
        """(the kernel's count, synfin's) read while no hand-over happened in between: a
        socket of an earlier test may still be handed over while the two are read."""
        for _ in range(50):
            kernel = timewaits_scheduled()
            ours = handovers(counters_module.read(probe))
            if timewaits_scheduled() == kernel:
                return kernel, ours
            time.sleep(0.05)
        raise AssertionError("hand-overs kept happening on this host while counting")

    with counting(LEAN) as probe:
        before_kernel, before = both()
        for number in range(10):
            for offset, name in enumerate(("client-closes", "server-closes", "half-close")):
                SCENARIOS[name].run(hosts, socket.AF_INET, first + 10 * offset + number)
        time.sleep(0.2)
        after_kernel, after = both()
    assert after - before == after_kernel - before_kernel >= 30


def test_a_real_close_from_fin_wait_2_is_not_a_hand_over(hosts: HostPair) -> None:
    """With no timewait sockets allowed, FIN-WAIT-2 -> CLOSED is a close: the bucket walk
    must not take some other timewait socket for this connection's."""
    with entered(hosts.server.namespace):
        saved = Path("/proc/sys/net/ipv4/tcp_max_tw_buckets").read_text()
    hosts.server.sysctl("net.ipv4.tcp_max_tw_buckets", "0")
    try:
        with counting(LEAN) as probe:
            # A timewait socket of another connection at the client, in the same table.
            SCENARIOS["client-closes"].run(hosts, socket.AF_INET, 39650)
            before = counters_module.read(probe)
            SCENARIOS["server-closes"].run(hosts, socket.AF_INET, 39651)
            time.sleep(0.2)
            after = counters_module.read(probe)
    finally:
        hosts.server.sysctl("net.ipv4.tcp_max_tw_buckets", saved.strip())
    fw2_close = (int(KernelState.FIN_WAIT2), int(KernelState.CLOSE), AF_INET)
    assert handovers(after) == handovers(before)
    assert after.transitions[fw2_close] - before.transitions.get(fw2_close, 0) == 1


def tcp_info_rtt_us(sock: socket.socket) -> int:
    """tcpi_rtt: the kernel's smoothed RTT of the socket, in microseconds."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, 68)[0]


def server_handshakes(probe: TcpProbe) -> tuple[int, int]:
    counters = counters_module.read(probe)
    slots, sum_ns = counters.handshake.get(1, ([0], 0))  # ROLE_PASSIVE
    return sum(slots), sum_ns


def passive_opens() -> int:
    """Tcp PassiveOpens: the handshakes the histogram may hold."""
    return everywhere(lambda net: net.tcp()["PassiveOpens"])


def alone(measure: Callable[[], tuple[int, int]]) -> tuple[int, int]:
    """Run ``measure`` (-> handshakes counted, their sum in ns) until no other handshake on
    the host shared its window (the histogram is host-wide); skip after three tries."""
    for _ in range(3):
        opens = passive_opens()
        result = measure()
        if passive_opens() - opens == 1:
            return result
    pytest.skip("other handshakes on this host during each of 3 tries: run on a quiet host")


def test_the_server_handshake_is_the_kernels_own_first_rtt(hosts: HostPair) -> None:
    rtts: list[int] = []

    def measure() -> tuple[int, int]:
        count_before, sum_before = server_handshakes(probe)
        listener, client, accepted = pair(hosts, socket.AF_INET, 39660)
        rtts.append(tcp_info_rtt_us(accepted))  # nothing exchanged yet: the SYN-ACK's trip
        count, sum_ns = server_handshakes(probe)
        for sock in (client, accepted, listener):
            sock.close()
        return count - count_before, sum_ns - sum_before

    with counting(LEAN) as probe:
        count, sum_ns = alone(measure)
    assert count == 1
    assert sum_ns // 1000 == rtts[-1] > 0


def test_a_retransmitted_syn_ack_times_the_handshake_from_the_first(hosts: HostPair) -> None:
    """The client's ACKs dropped for 1.5 s: the server resends its SYN-ACK at 1 s and 3 s; the
    handshake is timed from the first SYN-ACK (the kernel's RTT sample from the timestamp
    option), not the last."""
    ports = iter(range(39661, 39670))
    took: list[float] = []

    def measure() -> tuple[int, int]:
        port = next(ports)
        count_before, sum_before = server_handshakes(probe)
        listener = listen(hosts, socket.AF_INET, port)
        nft(
            hosts.server.namespace,
            "add table inet synfin_ack\n"
            "add chain inet synfin_ack in { type filter hook input priority 0; }\n"
            f"add rule inet synfin_ack in tcp dport {port} tcp flags & (syn | ack) == ack drop\n",
        )
        client = hosts.client.socket(socket.AF_INET)
        started = time.monotonic()
        client.connect((hosts.server.address(socket.AF_INET), port))
        time.sleep(1.5)
        nft(hosts.server.namespace, "delete table inet synfin_ack\n")
        listener.settimeout(10)
        accepted, _ = listener.accept()
        took.append(time.monotonic() - started)
        count, sum_ns = server_handshakes(probe)
        for sock in (client, accepted, listener):
            sock.close()
        return count - count_before, sum_ns - sum_before

    with counting(LEAN) as probe:
        count, sum_ns = alone(measure)
    assert count == 1
    assert 2.5 < sum_ns / 1e9 <= took[-1] + 0.01


def test_without_btf_the_lean_tier_says_why_and_auto_falls_back(tmp_path: Path) -> None:
    empty = tmp_path / "kallsyms"
    empty.write_text("")
    missing = {"btf_path": tmp_path / "no-btf", "kallsyms_path": empty, "stream_events": False}
    with pytest.raises(ProbeError, match=r"the lean tier is off: .*"):
        TcpProbe(ProbeOptions(tier=LEAN, **missing))  # type: ignore[arg-type]
    with TcpProbe(ProbeOptions(**missing)) as probe:  # type: ignore[arg-type]
        assert probe.tier == TIMERS
        assert "tw_timer_handler" in probe.lean_unavailable


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= set(found))


def wait_until(port: int, done: Callable[[dict], bool], timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def test_a_timewait_kill_is_inferred_from_the_census(hosts: HostPair) -> None:
    """`ss -K` kills the client's timewait socket: synfin run (lean) infers the kill from the
    next census, and the socket leaves synfin_tcp_connections."""
    port = 39670
    killed = {"from": "time_wait", "to": "closed"}
    transitions, connections = "synfin_tcp_state_transitions_total", "synfin_tcp_connections"
    with synfin_run("--probe-tier=lean", "--ground-truth-interval=1") as (_daemon, metrics):
        before = scrape(metrics)
        SCENARIOS["client-closes"].run(hosts, socket.AF_INET, port)
        # The next census sees the new timewait socket.
        seen = wait_until(
            metrics,
            lambda s: (
                total(s, connections, state="time_wait")
                > total(before, connections, state="time_wait")
            ),
        )
        kill_timewait(hosts.client.namespace, port)
        after = wait_until(
            metrics,
            lambda s: total(s, transitions, **killed) > total(seen, transitions, **killed),
        )
    assert total(after, transitions, **killed) - total(seen, transitions, **killed) == 1
    # Other namespaces' timewait sockets come and go meanwhile: synfin's TIME-WAIT is the
    # census's, read in the same scrape.
    for samples in (seen, after):
        assert total(samples, connections, state="time_wait") == total(
            samples, "synfin_kernel_tcp_sockets", state="time_wait"
        )


def test_a_full_table_leaves_sockets_unfollowed_and_says_so(hosts: HostPair) -> None:
    """--max-sockets 16: 32 slots. 81 sockets at once cannot all find a slot; those that do
    not are counted, the counters of every transition stay exact, and every slot comes back
    when the sockets are destroyed."""
    port = 39700 + 20 * next(_attempts)
    with TcpProbe(ProbeOptions(stream_events=False, tier=LEAN, max_sockets=16)) as probe:
        before = probe.tracking_stats()
        transitions_before = sum(probe.transition_counts().values())
        listener = listen(hosts, socket.AF_INET, port)
        pairs = [pair_with(listener, hosts, port) for _ in range(40)]
        full = probe.tracking_stats()
        for client, accepted in pairs:
            client.close()
            accepted.close()
        listener.close()
        time.sleep(0.3)
        after = probe.tracking_stats()
        transitions = sum(probe.transition_counts().values()) - transitions_before
    assert full.capacity == 32 and 0 < full.live <= 32
    assert full.evicted - before.evicted >= 81 - 32
    assert after.live == before.live  # every slot given back
    # 40 connections, each about ten transitions, and the listener's two: all counted.
    assert transitions >= 40 * 9


def pair_with(
    listener: socket.socket, hosts: HostPair, port: int
) -> tuple[socket.socket, socket.socket]:
    client = hosts.client.socket(socket.AF_INET)
    client.settimeout(5)
    client.connect((hosts.server.address(socket.AF_INET), port))
    return client, listener.accept()[0]


def retransmitted_segments() -> int:
    """Tcp RetransSegs (synfin's retransmits are host-wide)."""
    return everywhere(lambda net: net.tcp()["RetransSegs"])


_bulk_ports = iter(range(39900, 39960))  # one a tier and attempt: a timewait socket holds it
LOSSY = """
table inet lossy {{
    chain {chain} {{
        type filter hook {chain} priority 0;
        meta length > 1000 numgen random mod {one_in} == 0 drop
    }}
}}
"""


def bulk_transfers(hosts: HostPair, port: int, connections: int = 4, size: int = 1 << 20) -> None:
    listener = listen(hosts, socket.AF_INET, port)
    try:
        for _ in range(connections):
            client = hosts.client.socket(socket.AF_INET)
            client.settimeout(30)
            client.connect((hosts.server.ipv4, port))
            accepted, _ = listener.accept()
            accepted.settimeout(30)
            with ThreadPoolExecutor(1) as reader:
                received = reader.submit(lambda a=accepted: len(read_to_eof(a)))
                client.sendall(b"x" * size)
                client.shutdown(socket.SHUT_WR)
                assert received.result() == size
            accepted.close()
            client.close()
    finally:
        listener.close()


def test_both_tiers_count_retransmitted_segments_as_linux_does(hosts: HostPair) -> None:
    """Bulk transfers through loss: the server's firewall drops arriving data (segments lost on
    the way, retransmitted, several to an skb in a recovery), the client's drops some of what it
    sends (a retransmission that fails after Linux counted it). RetransSegs counts segments
    and failed attempts alike; so must both tiers. Before 6.18 the tracepoint does not report
    failed attempts (docs/metrics.md): there the client drops nothing."""
    nft(hosts.server.namespace, LOSSY.format(chain="input", one_in=8))
    if detect().defines["RETRANSMIT_HAS_ERR"]:
        nft(hosts.client.namespace, LOSSY.format(chain="output", one_in=16))
    try:
        for tier in (LEAN, TIMERS):
            with counting(tier) as probe:
                before = retransmitted_segments()
                bulk_transfers(hosts, next(_bulk_ports))
                time.sleep(0.3)  # the last retransmissions are over with the sockets
                kernel = retransmitted_segments() - before
                counted = sum(counters_module.read(probe).retransmits.values())
            assert kernel > 0, "no segment was retransmitted: the firewalls dropped nothing"
            assert counted == kernel, (
                f"{tier}: synfin counted {counted}, RetransSegs moved {kernel}"
            )
    finally:
        for host in (hosts.client, hosts.server):
            subprocess.run(
                ["ip", "netns", "exec", host.namespace, "nft", "delete", "table", "inet", "lossy"],
                capture_output=True, check=False,
            )  # fmt: skip


def bpftool_program(program_id: int) -> dict[str, object]:
    command = ["bpftool", "--json", "prog", "show", "id", str(program_id)]
    shown: dict[str, object] = json.loads(subprocess.check_output(command, text=True))
    return shown


@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool is not installed")
def test_missed_runs_are_what_the_kernel_says_of_each_hooks_program(hosts: HostPair) -> None:
    """synfin_probe_missed_runs_total: one program per hook the tier attaches, and for each
    the recursion misses bpftool shows (it prints them only when there are some)."""
    for tier in (LEAN, TIMERS):
        with counting(tier) as probe:
            SCENARIOS["client-closes"].run(hosts, socket.AF_INET, next(_bulk_ports))
            fds = probe.program_fds()
            assert sorted(fds) == sorted(probe.expected_hooks())
            missed = probe.missed_runs()
            shown = {}
            for hook, fd in fds.items():
                program = bpftool_program(tracing_loader.program_id(fd))
                assert program["type"] in ("tracepoint", "raw_tracepoint", "tracing"), program
                shown[hook] = program.get("recursion_misses", 0)
            assert missed == shown, tier
