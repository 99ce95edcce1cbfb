"""Named TCP behaviours between two test hosts, each with what synfin should report.

Every scenario runs real sockets between the client and server namespaces of a HostPair and
states, as data, the documented path and classification expected for each end and the change
the kernel's own Tcp counters should show in each namespace. The integration tests run them
against the live probe; their recordings replay through the engine in the unit tests; the lab
runs them for people.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from synfin.engine.states import State
from synfin.errors import EnvironmentProblem
from synfin.kernel.namespaces import HostPair, entered

TIMEOUT = 10.0  # no socket call in a scenario may block longer
CLOCK_MONOTONIC_COARSE = 6  # <linux/time.h>; Python's time module names it only from 3.13

C, SS, E, FW1, FW2, TW, CW, LA, L, SR, CL = (
    State.CLOSED, State.SYN_SENT, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2,
    State.TIME_WAIT, State.CLOSE_WAIT, State.LAST_ACK, State.LISTEN, State.SYN_RCVD,
    State.CLOSING,
)  # fmt: skip


@dataclass(frozen=True)
class Expected:
    """What synfin should report for one end of the connection."""

    path: tuple[State, ...]
    open: str
    result: str
    initiator: str | None = None
    close: str | None = None
    # Steps synfin may have to infer; every other step must be observed. Whether it infers
    # them depends on kernel timing (a timewait timer re-arm is traced only when it changes
    # timer-wheel buckets), so either is right for these.
    inferable: tuple[tuple[State, State], ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    run: Callable[[HostPair, int, int], None]  # (hosts, family, port)
    client: Expected
    server: Expected | None  # None: no server-side socket (refused, timeout)
    # Expected change of /proc/net/snmp Tcp counters, per host; unnamed counters stay put.
    snmp: dict[str, dict[str, int]] = field(default_factory=dict)
    families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6)
    # Every segment the client retransmits is a SYN (so Tcp RetransSegs counts SYN retries).
    only_syn_retransmits: bool = True


# -- helpers ---------------------------------------------------------------------------------


def nft(namespace: str, rules: str) -> None:
    """Load nftables rules inside ``namespace`` (text on stdin: no shell, no quoting)."""
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "-f", "-"],
        input=rules,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise EnvironmentProblem(
            f"nft in {namespace} failed: {result.stderr.strip()}", "install nftables"
        )


def listen(hosts: HostPair, family: int, port: int) -> socket.socket:
    listener = hosts.server.socket(family)
    listener.settimeout(TIMEOUT)
    listener.bind((hosts.server.address(family), port))
    listener.listen(16)
    return listener


def connect(hosts: HostPair, family: int, port: int) -> socket.socket:
    client = hosts.client.socket(family)
    client.settimeout(TIMEOUT)
    client.connect((hosts.server.address(family), port))
    return client


def pair(
    hosts: HostPair, family: int, port: int
) -> tuple[socket.socket, socket.socket, socket.socket]:
    listener = listen(hosts, family, port)
    client = connect(hosts, family, port)
    accepted, _ = listener.accept()
    accepted.settimeout(TIMEOUT)
    return listener, client, accepted


# Longer than the delayed-ACK timer (40 ms): the passive closer's ACK of the first FIN goes out
# on its own before its FIN, the four separate segments the textbook draws. Closing sooner
# merges that ACK into the FIN (three segments).
ACK_SEPARATELY = 0.1


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def snmp_counters(namespace: str) -> dict[str, int]:
    """The Tcp line of /proc/net/snmp as seen inside ``namespace``."""
    with entered(namespace):
        lines = Path("/proc/thread-self/net/snmp").read_text().splitlines()
    tcp = [line.split()[1:] for line in lines if line.startswith("Tcp:")]
    return {name: int(value) for name, value in zip(tcp[0], tcp[1], strict=True)}


# -- the behaviours --------------------------------------------------------------------------


def client_closes(hosts: HostPair, family: int, port: int) -> None:
    _exchange_then_client_closes(*pair(hosts, family, port))


def _exchange_then_client_closes(
    listener: socket.socket, client: socket.socket, accepted: socket.socket
) -> None:
    client.sendall(b"GET / HTTP/1.0\r\n\r\n")
    accepted.recv(1024)
    accepted.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
    client.recv(1024)
    client.close()
    read_to_eof(accepted)  # the client's FIN: the server is in CLOSE-WAIT
    time.sleep(ACK_SEPARATELY)
    accepted.close()
    listener.close()


def server_closes(hosts: HostPair, family: int, port: int) -> None:
    listener, client, accepted = pair(hosts, family, port)
    accepted.sendall(b"bye\n")
    accepted.close()
    read_to_eof(client)
    time.sleep(ACK_SEPARATELY)
    client.close()
    listener.close()


def _just_after_a_tick() -> None:
    """Return just after the kernel's clock ticked (CLOCK_MONOTONIC_COARSE moves once per
    tick), so that timers armed in the next few microseconds all expire in the same tick."""
    start = time.clock_gettime(CLOCK_MONOTONIC_COARSE)
    while time.clock_gettime(CLOCK_MONOTONIC_COARSE) == start:
        pass


def simultaneous_close(hosts: HostPair, family: int, port: int) -> None:
    """Both ends close while neither FIN can reach the other: each is in FIN-WAIT-1 when the
    other's FIN arrives, and both pass through CLOSING.

    The first FINs are dropped on arrival. Both ends closed just after one clock tick, so both
    retransmission timers expire in the same later tick and run in one timer softirq: both
    FINs are queued before the receive softirq delivers either, and they cross, as the
    textbook draws it. Each end then acknowledges the other's FIN.
    """
    listener, client, accepted = pair(hosts, family, port)
    namespaces = (hosts.client.namespace, hosts.server.namespace)
    drop = (
        "add table inet synfin_sim\n"
        "add chain inet synfin_sim in { type filter hook input priority 0; }\n"
        f"add rule inet synfin_sim in tcp sport {port} drop\n"
        f"add rule inet synfin_sim in tcp dport {port} drop\n"
    )
    for namespace in namespaces:
        nft(namespace, drop)
    try:
        _just_after_a_tick()
        client.close()
        accepted.close()
        time.sleep(0.05)
    finally:
        for namespace in namespaces:
            nft(namespace, "delete table inet synfin_sim\n")
    time.sleep(1.0)  # the retransmissions come at RTO (>= 200 ms)
    listener.close()


def half_close(hosts: HostPair, family: int, port: int) -> None:
    listener, client, accepted = pair(hosts, family, port)
    client.sendall(b"request")
    client.shutdown(socket.SHUT_WR)
    read_to_eof(accepted)
    accepted.sendall(b"response after the client's FIN")
    accepted.close()
    read_to_eof(client)
    client.close()
    listener.close()


def refused(hosts: HostPair, family: int, port: int) -> None:
    client = hosts.client.socket(family)
    client.settimeout(TIMEOUT)
    try:
        client.connect((hosts.server.address(family), port))
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError(f"connect to closed port {port} succeeded")
    finally:
        client.close()


def _drop_syns(hosts: HostPair, port: int) -> None:
    nft(
        hosts.server.namespace,
        "add table inet synfin_drop\n"
        "add chain inet synfin_drop in { type filter hook input priority 0; }\n"
        f"add rule inet synfin_drop in tcp dport {port} tcp flags & syn == syn drop\n",
    )


def _stop_dropping_syns(hosts: HostPair) -> None:
    nft(hosts.server.namespace, "delete table inet synfin_drop\n")


def syn_timeout(hosts: HostPair, family: int, port: int) -> None:
    """SYNs dropped at the server; the client gives up after a few retransmits (1 s apart)."""
    hosts.client.sysctl("net.ipv4.tcp_syn_retries", "1")
    _drop_syns(hosts, port)
    client = hosts.client.socket(family)
    client.settimeout(30)
    try:
        client.connect((hosts.server.address(family), port))
    except (TimeoutError, OSError):
        pass
    else:
        raise AssertionError("connect succeeded through a SYN drop")
    finally:
        client.close()
        _stop_dropping_syns(hosts)
        hosts.client.sysctl("net.ipv4.tcp_syn_retries", "6")


def syn_retransmitted(hosts: HostPair, family: int, port: int) -> None:
    """The first SYN is dropped at the server; the retransmission a second later gets through,
    and the connection then closes as in client-closes."""
    listener = listen(hosts, family, port)
    _drop_syns(hosts, port)
    client = hosts.client.socket(family)
    client.setblocking(False)
    try:
        client.connect_ex((hosts.server.address(family), port))
        time.sleep(0.3)  # the first SYN has left and been dropped; the retry comes at 1 s
    finally:
        _stop_dropping_syns(hosts)
    _, writable, _ = select.select([], [client], [], TIMEOUT)
    if not writable or client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
        raise AssertionError("the retransmitted SYN did not open the connection")
    client.setblocking(True)
    client.settimeout(TIMEOUT)
    accepted, _ = listener.accept()
    accepted.settimeout(TIMEOUT)
    _exchange_then_client_closes(listener, client, accepted)


def reset_abort(hosts: HostPair, family: int, port: int) -> None:
    """SO_LINGER with a zero timeout: close() sends RST instead of FIN."""
    listener, client, accepted = pair(hosts, family, port)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    with contextlib.suppress(ConnectionResetError):
        read_to_eof(accepted)
    accepted.close()
    listener.close()


def unread_data_abort(hosts: HostPair, family: int, port: int) -> None:
    """The server closes with the client's data unread: the kernel answers with RST."""
    listener, client, accepted = pair(hosts, family, port)
    client.sendall(b"data the server never reads")
    time.sleep(0.1)
    accepted.close()
    with contextlib.suppress(ConnectionResetError):
        read_to_eof(client)
    client.close()
    listener.close()


def time_wait_killed(hosts: HostPair, family: int, port: int) -> None:
    """The normal close, then the client's TIME-WAIT socket killed with `ss -K`."""
    client_closes(hosts, family, port)
    subprocess.run(
        ["ip", "netns", "exec", hosts.client.namespace, "ss", "-K", "-tn", "state", "time-wait",
         "dport", "=", f":{port}"],
        capture_output=True,
        check=True,
    )  # fmt: skip


def keepalive(hosts: HostPair, family: int, port: int, requests: int = 50) -> None:
    """One connection carrying many request/response exchanges, then closed by the client."""
    listener, client, accepted = pair(hosts, family, port)
    for number in range(requests):
        client.sendall(b"GET /%d HTTP/1.1\r\nConnection: keep-alive\r\n\r\n" % number)
        accepted.recv(1024)
        accepted.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        client.recv(1024)
    client.close()
    read_to_eof(accepted)
    time.sleep(ACK_SEPARATELY)
    accepted.close()
    listener.close()


# -- what each should produce ----------------------------------------------------------------

ACTIVE_CLOSER = (C, SS, E, FW1, FW2, TW)
PASSIVE_CLOSER_SERVER = (L, SR, E, CW, LA, C)
PEER_FIN_INFERRED = ((FW2, TW),)
OPENS = {"client": {"ActiveOpens": 1}, "server": {"PassiveOpens": 1}}
# The textbook's connection: the client opens and closes first; both ends here.
CLIENT_CLOSES = (
    Expected(ACTIVE_CLOSER, "active", "established", "local", "graceful", PEER_FIN_INFERRED),
    Expected(PASSIVE_CLOSER_SERVER, "passive", "established", "remote", "graceful"),
    OPENS,
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "client-closes",
            "the client closes first, the server reads EOF and closes",
            client_closes,
            *CLIENT_CLOSES,
        ),
        Scenario(
            "server-closes",
            "the server closes first, the client reads EOF and closes",
            server_closes,
            Expected((C, SS, E, CW, LA, C), "active", "established", "remote", "graceful"),
            Expected(
                (L, SR, E, FW1, FW2, TW),
                "passive",
                "established",
                "local",
                "graceful",
                PEER_FIN_INFERRED,
            ),
            OPENS,
        ),
        Scenario(
            "simultaneous-close",
            "both ends close while neither FIN can reach the other: both pass through CLOSING",
            simultaneous_close,
            Expected((C, SS, E, FW1, CL, TW), "active", "established", "simultaneous", "graceful"),
            Expected((L, SR, E, FW1, CL, TW), "passive", "established", "simultaneous", "graceful"),
            OPENS,
            only_syn_retransmits=False,  # the FINs are retransmitted
        ),
        Scenario(
            "half-close",
            "the client shuts down sending; the server answers after that FIN, then both close",
            half_close,
            # Not orphaned, the client's socket stays in FIN-WAIT-2 until the server's FIN:
            # its hand-over to the timewait socket is the observed entry into TIME-WAIT.
            Expected(ACTIVE_CLOSER, "active", "established", "local", "half_close"),
            Expected(PASSIVE_CLOSER_SERVER, "passive", "established", "remote", "graceful"),
            OPENS,
        ),
        Scenario(
            "refused",
            "a SYN to a port nobody listens on, answered by RST",
            refused,
            Expected((C, SS, C), "active", "refused"),
            None,
            {"client": {"ActiveOpens": 1, "AttemptFails": 1}, "server": {"OutRsts": 1}},
        ),
        Scenario(
            "syn-timeout",
            "SYNs dropped by nftables at the server; the client retries, then gives up",
            syn_timeout,
            Expected((C, SS, C), "active", "timeout"),
            None,
            {"client": {"ActiveOpens": 1, "AttemptFails": 1}},
        ),
        Scenario(
            "syn-retransmit",
            "the first SYN dropped at the server; the retry a second later opens the connection",
            syn_retransmitted,
            *CLIENT_CLOSES,
        ),
        Scenario(
            "reset-abort",
            "the client closes with SO_LINGER 0: RST instead of FIN",
            reset_abort,
            Expected((C, SS, E, C), "active", "established", "local", "abort"),
            Expected((L, SR, E, C), "passive", "established", "remote", "reset_received"),
            {
                "client": {"ActiveOpens": 1, "EstabResets": 1, "OutRsts": 1},
                "server": {"PassiveOpens": 1, "EstabResets": 1},
            },
        ),
        Scenario(
            "unread-data-abort",
            "the server closes with the client's data unread: RST instead of FIN",
            unread_data_abort,
            Expected((C, SS, E, C), "active", "established", "remote", "reset_received"),
            Expected((L, SR, E, C), "passive", "established", "local", "abort"),
            {
                "client": {"ActiveOpens": 1, "EstabResets": 1},
                "server": {"PassiveOpens": 1, "EstabResets": 1, "OutRsts": 1},
            },
        ),
        Scenario(
            "time-wait-killed",
            "the normal close, then the client's TIME-WAIT socket killed with ss -K",
            time_wait_killed,
            Expected(
                (*ACTIVE_CLOSER, C), "active", "established", "local", "graceful", PEER_FIN_INFERRED
            ),
            Expected(PASSIVE_CLOSER_SERVER, "passive", "established", "remote", "graceful"),
            OPENS,
        ),
        Scenario(
            "keepalive",
            "one connection carrying 50 requests, then closed by the client",
            keepalive,
            *CLIENT_CLOSES,
        ),
    ]
}
