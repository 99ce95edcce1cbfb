"""Ground truth: the kernel's own list of TCP sockets, over netlink sock_diag (pyroute2).

A census asks the kernel directly, one network namespace at a time (sock_diag answers for the
namespace of the socket that asks). synfin.engine.reconcile compares it with what the engine
believes; the exporter counts it per state.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from synfin.errors import EnvironmentProblem
from synfin.kernel.namespaces import entered_path
from synfin.records.addresses import pack_address

ALL_STATES = (1 << 13) - 1  # TCP_ESTABLISHED (1) .. TCP_NEW_SYN_RECV (12)
# inet_diag's timer kind of a timewait socket, whose state is its substate (FIN_WAIT2 or
# TIME_WAIT): what tells it from a full socket in FIN_WAIT2.
TIMEWAIT_TIMER = 3


@dataclass(frozen=True)
class KernelSocket:
    """One TCP socket as sock_diag reports it (timewait and request sockets included)."""

    netns: int
    family: int
    state: int  # the kernel's TCP_* value (synfin.engine.states.KernelState)
    saddr: bytes
    sport: int
    daddr: bytes
    dport: int
    timewait: bool = False  # a timewait socket (state is its substate)

    @property
    def key(self) -> tuple[int, int, bytes, int, bytes, int]:
        return (self.netns, self.family, self.saddr, self.sport, self.daddr, self.dport)


def namespaces() -> dict[int, Path]:
    """Every network namespace this host can reach, by inode: a path that opens it.

    Named ones (``ip netns``) and those of running processes (containers included).
    """
    found: dict[int, Path] = {}
    candidates: list[Path] = []
    if Path("/run/netns").is_dir():
        candidates += sorted(Path("/run/netns").iterdir())
    candidates += [Path(f"/proc/{pid}/ns/net") for pid in os.listdir("/proc") if pid.isdigit()]
    for path in candidates:
        try:
            found.setdefault(os.stat(path).st_ino, path)
        except OSError:
            continue  # the process exited, or the mount went away
    return found


def dump(netns: int) -> Iterator[KernelSocket]:
    """The sockets of the namespace this thread is in (``netns``: its inode, for the keys)."""
    from pyroute2 import DiagSocket  # noqa: PLC0415  (netlink is only needed here)

    with DiagSocket() as diag:
        diag.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for entry in diag.get_sock_stats(family=family, states=ALL_STATES):
                yield KernelSocket(
                    netns=netns,
                    family=family,
                    state=entry["idiag_state"],
                    saddr=pack_address(entry["idiag_src"])[1],
                    sport=entry["idiag_sport"],
                    daddr=pack_address(entry["idiag_dst"])[1],
                    dport=entry["idiag_dport"],
                    timewait=entry["idiag_timer"] == TIMEWAIT_TIMER,
                )


def take(netns_paths: dict[int, Path]) -> list[KernelSocket]:
    """Every TCP socket in the given namespaces, asked inside each one."""
    sockets: list[KernelSocket] = []
    for netns, path in netns_paths.items():
        try:
            with entered_path(path):
                sockets.extend(dump(netns))
        except FileNotFoundError:
            continue  # the namespace went away between listing and asking
        except OSError as error:
            raise EnvironmentProblem(
                f"cannot ask the kernel for the sockets of namespace {netns}: {error.strerror}",
                "run as root (sock_diag in other namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN)",
            ) from None
    return sockets


def census(netns: frozenset[int] = frozenset()) -> list[KernelSocket]:
    """Every TCP socket in these namespaces (every namespace when empty), asked now."""
    paths = namespaces()
    if netns:
        paths = {inode: path for inode, path in paths.items() if inode in netns}
    return take(paths)
