"""Test hosts in network namespaces joined by a veth pair, and sockets opened inside them.

Used by the lab and the tests: real TCP between two network stacks on one machine, with
traffic that never leaves the namespaces synfin creates. Addresses come from the ranges set
aside for documentation (192.0.2.0/24, 2001:db8::/32).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from synfin.errors import EnvironmentProblem
from synfin.kernel.namespaces import NETNS_DIR, entered


def ip(*args: str, namespace: str | None = None) -> None:
    """Run ``ip`` (inside ``namespace`` if given); raise with its message if it fails."""
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EnvironmentProblem(
            f"`{' '.join(command)}` failed: {result.stderr.strip()}",
            "run as root on a kernel with network namespaces and veth",
        )


def _mac(device: str, namespace: str) -> str:
    command = ["ip", "-n", namespace, "-j", "link", "show", "dev", device]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return str(json.loads(output)[0]["address"])


@dataclass(frozen=True)
class Host:
    namespace: str
    ipv4: str
    ipv6: str

    def address(self, family: int) -> str:
        return self.ipv4 if family == socket.AF_INET else self.ipv6

    def socket(self, family: int = socket.AF_INET) -> socket.socket:
        """A new TCP socket inside this host's namespace."""
        with entered(self.namespace):
            return socket.socket(family, socket.SOCK_STREAM)

    def sysctl(self, name: str, value: str) -> None:
        """Set a per-namespace sysctl (e.g. net.ipv4.tcp_syn_retries) on this host only."""
        with entered(self.namespace):
            Path("/proc/sys", *name.split(".")).write_text(value)


@dataclass
class HostPair:
    """A client and a server host, each in its own namespace, joined by one veth pair."""

    prefix: str = field(default_factory=lambda: f"synfin{os.getpid()}")
    client: Host = field(init=False)
    server: Host = field(init=False)

    def __post_init__(self) -> None:
        self.client = Host(f"{self.prefix}-c", "192.0.2.1", "2001:db8::1")
        self.server = Host(f"{self.prefix}-s", "192.0.2.2", "2001:db8::2")

    def create(self) -> HostPair:
        try:
            for host in (self.client, self.server):
                ip("netns", "add", host.namespace)
                ip("link", "set", "lo", "up", namespace=host.namespace)
            ends = [f"{self.prefix[:10]}c", f"{self.prefix[:10]}s"]
            ip("link", "add", ends[0], "netns", self.client.namespace,
               "type", "veth", "peer", "name", ends[1], "netns", self.server.namespace)  # fmt: skip
            for host, end in zip((self.client, self.server), ends, strict=True):
                ns = host.namespace
                ip("addr", "add", f"{host.ipv4}/24", "dev", end, namespace=ns)
                # nodad: the address is usable at once instead of after duplicate detection.
                ip("-6", "addr", "add", f"{host.ipv6}/64", "dev", end, "nodad", namespace=ns)
                ip("link", "set", end, "up", namespace=ns)
            self._pin_neighbours(ends)
        except BaseException:
            self.destroy()
            raise
        return self

    def _pin_neighbours(self, ends: list[str]) -> None:
        """Permanent ARP/NDP entries: no first SYN waits on (or is lost to) address resolution."""
        hosts = (self.client, self.server)
        macs = [_mac(end, host.namespace) for host, end in zip(hosts, ends, strict=True)]
        for (host, end), peer, mac in zip(
            zip(hosts, ends, strict=True), reversed(hosts), reversed(macs), strict=True
        ):
            for address in (peer.ipv4, peer.ipv6):
                ip(
                    "neigh",
                    "replace",
                    address,
                    "lladdr",
                    mac,
                    "dev",
                    end,
                    "nud",
                    "permanent",
                    namespace=host.namespace,
                )

    def destroy(self) -> None:
        """Remove both namespaces (and with them the veth pair); safe to call twice."""
        for host in (self.client, self.server):
            if (NETNS_DIR / host.namespace).exists():
                subprocess.run(["ip", "netns", "del", host.namespace], check=False)

    def __enter__(self) -> HostPair:
        return self.create()

    def __exit__(self, *_exc: object) -> None:
        self.destroy()
