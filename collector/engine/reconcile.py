"""Reconciliation: what the engine believes against the kernel's own list of sockets.

synfin's engine believes each socket is in some documented state because of the events it
saw. A census of the kernel's sockets (synfin.kernel.sock_diag, passed in) is compared with
that belief per namespace and state, and any difference reported. At start-up a census also
tells the engine about sockets that existed before synfin.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from synfin.engine.connection import SocketKey
from synfin.engine.lifecycle import Engine
from synfin.engine.states import State, documented


class CensusSocket(Protocol):
    """One socket as the kernel lists it."""

    @property
    def key(self) -> SocketKey: ...

    @property
    def state(self) -> int: ...  # the kernel's TCP_* value


Census = Callable[[frozenset[int]], Iterable[CensusSocket]]  # namespaces (empty: all) -> sockets


def count(sockets: Iterable[CensusSocket]) -> Counter[tuple[int, State]]:
    return Counter((s.key[0], documented(s.state)) for s in sockets)


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

    def covers(self, sock: CensusSocket) -> bool:
        netns, family, _saddr, sport, _daddr, dport = sock.key
        return (
            (not self.ports or sport in self.ports or dport in self.ports)
            and (not self.family or family == self.family)
            and (not self.netns or netns in self.netns)
        )


class Reconciler:
    """Seeds an engine from the kernel's sockets, then compares the two on demand."""

    def __init__(self, engine: Engine, census: Census, scope: Scope | None = None) -> None:
        self.engine = engine
        self.census = census
        self.scope = scope or Scope()

    def _truth(self) -> list[CensusSocket]:
        return [sock for sock in self.census(self.scope.netns) if self.scope.covers(sock)]

    def seed(self) -> int:
        """Tell the engine about every socket that exists now; return how many."""
        truth = self._truth()
        self.engine.seed((sock.key, documented(sock.state)) for sock in truth)
        return len(truth)

    def check(self) -> tuple[list[Difference], int]:
        """Differences between the engine's belief and the kernel, and the sockets compared.

        Sockets known only from an earlier snapshot follow the kernel: one that is gone ended
        unobserved (it began before synfin), so it is dropped from the belief.
        """
        truth = self._truth()
        now = {sock.key: documented(sock.state) for sock in truth}
        self.engine.preexisting = {key: now[key] for key in self.engine.preexisting if key in now}
        belief = {
            (netns, state): n
            for (netns, state), n in self.engine.belief().items()
            if not self.scope.netns or netns in self.scope.netns
        }
        return compare(belief, count(truth)), len(truth)
