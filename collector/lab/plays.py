"""The socket plays of the lab: what each scenario does between the client and server
namespaces of a HostPair, and the pieces they and the storms are built from (a listener, a
connection, an accepted pair, nftables rules inside a namespace).

Each play takes (hosts, family, port), returns once its sockets are closed, and sends nothing
outside the namespaces; collector/lab/scenarios.py says what each should produce.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import subprocess
import time

from synfin.errors import EnvironmentProblem
from synfin.lab.hosts import HostPair

TIMEOUT = 10.0  # no socket call in a play may block longer
CLOCK_MONOTONIC_COARSE = 6  # <linux/time.h>; Python's time module names it only from 3.13


# -- the pieces ------------------------------------------------------------------------------


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


def _timewait_query(namespace: str, port: int, *options: str) -> list[str]:
    """`ss` on the client side's TIME-WAIT sockets to ``port`` in ``namespace``."""
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, "ss", "-Htn", *options, "state", "time-wait",
         "dport", "=", f":{port}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.splitlines()


def kill_timewait(namespace: str, port: int, count: int = 1) -> None:
    """Kill the ``count`` TIME-WAIT sockets to ``port`` with `ss -K`, once all are there: the
    peer's last FIN is delivered asynchronously (veth), so a close() returning does not mean
    its socket reached TIME-WAIT, and `ss -K` would miss a socket still in FIN-WAIT-2."""
    deadline = time.monotonic() + TIMEOUT
    while len(_timewait_query(namespace, port)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} TIME-WAIT sockets to port {port} never appeared")
        time.sleep(0.01)
    _timewait_query(namespace, port, "-K")


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


# -- the plays -------------------------------------------------------------------------------


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
    kill_timewait(hosts.client.namespace, port)


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
