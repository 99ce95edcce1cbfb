"""A network namespace whose only way out is a tun device the test holds.

The local end's sockets live in the namespace; the remote end has no kernel at all: every
packet the local stack sends to 192.0.2.2 / 2001:db8::2 comes out of the tun file descriptor,
and every packet the test writes there arrives as if from the wire. Nothing answers on its
own, not even with a RST, and nothing is routed out of the namespace (it has no other
interface than lo).
"""

from __future__ import annotations

import fcntl
import itertools
import os
import select
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from synfin.kernel.namespaces import NETNS_DIR, entered
from synfin.kernel.procfs import ProcNet
from synfin.lab.plays import nft
from tests.peer.packets import Segment, parse

TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000  # no 4-byte packet-information prefix: reads and writes are bare IP
DEVICE = "peer0"
LOCAL = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}
REMOTE = {socket.AF_INET: "192.0.2.2", socket.AF_INET6: "2001:db8::2"}
FAMILIES = (socket.AF_INET, socket.AF_INET6)
IDLE_INTERVAL = 0.05

_names = itertools.count()


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


class TunNetwork:
    """The namespace, its tun device and the packets read from it (a context manager)."""

    def __init__(self, name: str | None = None) -> None:
        self.namespace = name or f"synfinpeer{os.getpid()}-{next(_names)}"
        self.fd = -1
        self.inode = 0
        self.sockets: list[socket.socket] = []
        self.inbox: list[Segment] = []  # read, not yet taken by a Peer
        self.log: list[Segment] = []  # every TCP segment both ways, for failure messages
        # Called at least every IDLE_INTERVAL while a read waits (the lab drains synfin's ring
        # buffer there, so a long wait cannot let it fill up).
        self.on_idle: Callable[[], None] = lambda: None

    # -- life --------------------------------------------------------------------------------

    def __enter__(self) -> TunNetwork:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        _ip("netns", "add", self.namespace)
        self.inode = os.stat(NETNS_DIR / self.namespace).st_ino
        _ip("-n", self.namespace, "link", "set", "lo", "up")
        with entered(self.namespace):
            # The device belongs to the namespace of whoever opens /dev/net/tun.
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            request = struct.pack("16sH22x", DEVICE.encode(), IFF_TUN | IFF_NO_PI)
            fcntl.ioctl(self.fd, TUNSETIFF, request)
        ns = ("-n", self.namespace)
        # No router solicitations or DAD probes to read past: the tests want TCP only.
        self.sysctl(f"net.ipv6.conf.{DEVICE}.router_solicitations", "0")
        _ip(*ns, "addr", "add", f"{LOCAL[socket.AF_INET]}/24", "dev", DEVICE)
        _ip(*ns, "-6", "addr", "add", f"{LOCAL[socket.AF_INET6]}/64", "dev", DEVICE, "nodad")
        _ip(*ns, "link", "set", DEVICE, "up")
        # The prefix routes already reach the peer through the device; these say so plainly.
        _ip(*ns, "route", "replace", f"{REMOTE[socket.AF_INET]}/32", "dev", DEVICE)
        _ip(*ns, "-6", "route", "replace", f"{REMOTE[socket.AF_INET6]}/128", "dev", DEVICE)

    def close(self) -> None:
        """Close the test's sockets and the device, delete the namespace; safe to repeat."""
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if (NETNS_DIR / self.namespace).exists():
            subprocess.run(["ip", "netns", "del", self.namespace], check=False)

    # -- inside the namespace ----------------------------------------------------------------

    def socket(self, family: int = socket.AF_INET) -> socket.socket:
        """A TCP socket in the namespace, closed (if still open) when the network goes."""
        with entered(self.namespace):
            sock = socket.socket(family, socket.SOCK_STREAM)
        self.sockets.append(sock)
        return sock

    def adopt(self, sock: socket.socket) -> socket.socket:
        """Close ``sock`` (an accepted one, say) with the network if the test does not."""
        self.sockets.append(sock)
        return sock

    def sysctl(self, name: str, value: str | int) -> None:
        """A per-namespace sysctl (net.ipv4.tcp_synack_retries...), this namespace only."""
        with entered(self.namespace):
            Path("/proc/sys", *name.split(".")).write_text(str(value))

    def drop_outgoing(self) -> None:
        """From now on the namespace's firewall drops every packet it sends: a send fails with
        EPERM before it reaches the device (nftables' output hook)."""
        nft(
            self.namespace,
            "table inet peer_drop { chain out { type filter hook output priority 0; drop; }; }",
        )

    def proc_net(self) -> tuple[dict[str, int], dict[str, int]]:
        """(Tcp, TcpExt) of this namespace, read now."""
        with entered(self.namespace):
            net = ProcNet()
            return net.tcp(), net.tcp_ext()

    # -- the wire ----------------------------------------------------------------------------

    def write(self, segment: Segment) -> None:
        self.log.append(segment)
        os.write(self.fd, segment.to_bytes())

    def read(self, timeout: float) -> Segment | None:
        """The next TCP segment from the local stack within ``timeout`` seconds, else None.

        Whatever else the stack sends (ICMPv6, MLD) is dropped here.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                packet = os.read(self.fd, 65536)
            except BlockingIOError:
                self.on_idle()
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                select.select([self.fd], [], [], min(left, IDLE_INTERVAL))
                continue
            segment = parse(packet, at=time.monotonic())
            if segment is not None:
                self.log.append(segment)
                return segment
