"""Scenarios of many connections at once, judged by counts rather than one connection's path.

Like collector/lab/scenarios.py they run between the client and server namespaces of a HostPair
and state what synfin (and the kernel) should report; every packet stays in the namespaces.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from synfin.kernel.namespaces import entered
from synfin.kernel.procfs import ProcNet
from synfin.lab.hosts import HostPair
from synfin.lab.plays import listen, nft, read_to_eof


@dataclass(frozen=True)
class Storm:
    name: str
    summary: str
    run: Callable[[HostPair, int, int, int], None]  # (hosts, family, port, count)
    expects: str  # what synfin should report, for people (with {count})
    count: int  # connections by default


def tcp_ext(namespace: str) -> dict[str, int]:
    """TcpExt counters of /proc/net/netstat as seen inside ``namespace``."""
    with entered(namespace):
        return ProcNet().tcp_ext()


def _start_connect(hosts: HostPair, family: int, port: int) -> socket.socket:
    client = hosts.client.socket(family)
    client.setblocking(False)
    code = client.connect_ex((hosts.server.address(family), port))
    if code not in (0, errno.EINPROGRESS):
        client.close()
        raise OSError(code, f"connect: {errno.errorcode.get(code, code)}")
    return client


def time_wait_storm(hosts: HostPair, family: int, port: int, count: int) -> None:
    """Many short connections, the client closing first: its side fills with TIME-WAIT."""
    listener = listen(hosts, family, port)
    try:
        for _ in range(count):
            client = hosts.client.socket(family)
            client.settimeout(10)
            client.connect((hosts.server.address(family), port))
            accepted, _ = listener.accept()
            client.close()
            read_to_eof(accepted)
            accepted.close()
    finally:
        listener.close()


def syn_flood(hosts: HostPair, family: int, port: int, count: int) -> None:
    """SYNs whose SYN-ACKs never come back: the listener holds ``count`` half-open requests
    (SYN-RCVD, in request sockets) and retransmits SYN-ACKs. Bounded, and inside the namespaces."""
    hosts.server.sysctl("net.ipv4.tcp_syncookies", "0")  # keep real request sockets
    listener = listen(hosts, family, port)
    listener.listen(count * 2)
    nft(
        hosts.client.namespace,
        "add table inet synfin_flood\n"
        "add chain inet synfin_flood in { type filter hook input priority 0; }\n"
        f"add rule inet synfin_flood in tcp sport {port} drop\n",
    )
    clients: list[socket.socket] = []
    try:
        clients = [_start_connect(hosts, family, port) for _ in range(count)]
        time.sleep(1.5)  # past the first SYN-ACK retransmission (1 s)
    finally:
        for client in clients:
            client.close()
        nft(hosts.client.namespace, "delete table inet synfin_flood\n")
        listener.close()
        hosts.server.sysctl("net.ipv4.tcp_syncookies", "1")


def listen_overflow(hosts: HostPair, family: int, port: int, count: int) -> None:
    """A listener with a backlog of 1 that never accepts: once its accept queue is full, the
    kernel drops further SYNs (TcpExt ListenOverflows) and clients retransmit them."""
    listener = hosts.server.socket(family)
    listener.bind((hosts.server.address(family), port))
    listener.listen(1)
    clients: list[socket.socket] = []
    try:
        clients = [_start_connect(hosts, family, port) for _ in range(count)]
        time.sleep(2.5)  # the dropped SYNs' first retransmission (1 s), with room for a busy host
    finally:
        for client in clients:
            with contextlib.suppress(OSError):
                client.close()
        listener.close()


STORMS: dict[str, Storm] = {
    s.name: s
    for s in [
        Storm(
            "time-wait-storm",
            "many short connections, client closing first: TIME-WAIT sockets pile up",
            time_wait_storm,
            "{count} connects established and {count} accepts; {count} local and {count} remote "
            "graceful closes; {count} client sockets in TIME-WAIT (synfin and sock_diag agree)",
            200,
        ),
        Storm(
            "syn-flood",
            "SYNs whose SYN-ACKs are dropped: half-open requests pile up at the listener",
            syn_flood,
            "{count} half-open requests in SYN-RCVD at the kernel (synfin_kernel_tcp_sockets), "
            'SYN-ACK retransmits rising (synfin_tcp_retransmits_total{{kind="synack"}}), '
            "no accept",
            200,
        ),
        Storm(
            "listen-overflow",
            "a listener with backlog 1 that never accepts: its queue fills and SYNs are dropped",
            listen_overflow,
            "accepts stop at the backlog (2 of {count}); the other clients stay in SYN-SENT and "
            'retransmit SYNs (synfin_tcp_retransmits_total{{kind="syn"}}); the kernel counts '
            "ListenOverflows",
            10,
        ),
    ]
}
