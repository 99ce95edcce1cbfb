"""Ground truth: the kernel's own list of TCP sockets, over netlink sock_diag (pyroute2).

synfin's engine believes each socket is in some documented state because of the events it
saw. A snapshot asks the kernel directly, one network namespace at a time (sock_diag answers
for the namespace of the socket that asks), so the two can be compared and any difference
reported. At start-up a snapshot also tells the engine about sockets that existed before it.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from synfin.engine.lifecycle import Engine
from synfin.engine.states import State, documented
from synfin.errors import EnvironmentProblem
from synfin.kernel.namespaces import entered_path
from synfin.records.addresses import pack_address

ALL_STATES = (1 << 13) - 1  # TCP_ESTABLISHED (1) .. TCP_NEW_SYN_RECV (12)


@dataclass(frozen=True)
class KernelSocket:
    """One TCP socket as sock_diag reports it (timewait and request sockets included)."""

    netns: int
    family: int
    state: State
    saddr: bytes
    sport: int
    daddr: bytes
    dport: int

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


def _dump(netns: int) -> Iterator[KernelSocket]:
    from pyroute2 import DiagSocket  # noqa: PLC0415  (netlink is only needed here)

    with DiagSocket() as diag:
        diag.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for entry in diag.get_sock_stats(family=family, states=ALL_STATES):
                yield KernelSocket(
                    netns=netns,
                    family=family,
                    state=documented(entry["idiag_state"]),
                    saddr=pack_address(entry["idiag_src"])[1],
                    sport=entry["idiag_sport"],
                    daddr=pack_address(entry["idiag_dst"])[1],
                    dport=entry["idiag_dport"],
                )


def take(netns_paths: dict[int, Path]) -> list[KernelSocket]:
    """Every TCP socket in the given namespaces, asked inside each one."""
    sockets: list[KernelSocket] = []
    for netns, path in netns_paths.items():
        try:
            with entered_path(path):
                sockets.extend(_dump(netns))
        except FileNotFoundError:
            continue  # the namespace went away between listing and asking
        except OSError as error:
            raise EnvironmentProblem(
                f"cannot ask the kernel for the sockets of namespace {netns}: {error.strerror}",
                "run as root (sock_diag in other namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN)",
            ) from None
    return sockets


def count(sockets: Iterable[KernelSocket]) -> Counter[tuple[int, State]]:
    return Counter((s.netns, s.state) for s in sockets)


@dataclass(frozen=True)
class Difference:
    netns: int
    state: State
    synfin: int
    kernel: int


def compare(
    belief: dict[tuple[int, State], int], truth: dict[tuple[int, State], int]
) -> list[Difference]:
    """Where the engine's count per (namespace, state) is not the kernel's."""
    keys = sorted(set(belief) | set(truth), key=lambda key: (key[0], key[1].value))
    return [
        Difference(netns, state, belief.get((netns, state), 0), truth.get((netns, state), 0))
        for netns, state in keys
        if belief.get((netns, state), 0) != truth.get((netns, state), 0)
    ]


@dataclass(frozen=True)
class Scope:
    """Which sockets a comparison covers: the same filters the event stream has."""

    ports: frozenset[int] = frozenset()
    family: int = 0  # 0: both
    netns: frozenset[int] = frozenset()  # empty: every namespace

    def covers(self, sock: KernelSocket) -> bool:
        return (
            (not self.ports or sock.sport in self.ports or sock.dport in self.ports)
            and (not self.family or sock.family == self.family)
            and (not self.netns or sock.netns in self.netns)
        )


class Reconciler:
    """Seeds an engine from the kernel's sockets, then compares the two on demand."""

    def __init__(self, engine: Engine, scope: Scope | None = None) -> None:
        self.engine = engine
        self.scope = scope or Scope()

    def _truth(self) -> list[KernelSocket]:
        paths = namespaces()
        if self.scope.netns:
            paths = {inode: path for inode, path in paths.items() if inode in self.scope.netns}
        return [sock for sock in take(paths) if self.scope.covers(sock)]

    def seed(self) -> int:
        """Tell the engine about every socket that exists now; return how many."""
        truth = self._truth()
        self.engine.seed((sock.key, sock.state) for sock in truth)
        return len(truth)

    def check(self) -> tuple[list[Difference], int]:
        """Differences between the engine's belief and the kernel, and the sockets compared.

        Sockets known only from an earlier snapshot follow the kernel: one that is gone ended
        unobserved (it began before synfin), so it is dropped from the belief.
        """
        truth = self._truth()
        now = {sock.key: sock.state for sock in truth}
        self.engine.preexisting = {key: now[key] for key in self.engine.preexisting if key in now}
        belief = {
            (netns, state): n
            for (netns, state), n in self.engine.belief().items()
            if not self.scope.netns or netns in self.scope.netns
        }
        return compare(belief, count(truth)), len(truth)
