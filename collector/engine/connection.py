"""One connection as the engine follows it, and what the engine says about it.

A ``Connection`` is one socket's life so far: its documented state, the steps it took (each
observed or inferred), its facts and, once over, its classification. The engine's outputs
(``StepTaken``, ``Noted``, ``Classified``, ``Finished``) each carry the connection and the
kernel event that caused them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synfin.engine.classify import Classification
from synfin.engine.states import State
from synfin.records.addresses import Endpoints
from synfin.records.events import Event, Fact

# (netns, family, local address, local port, remote address, remote port)
SocketKey = tuple[int, int, bytes, int, bytes, int]


@dataclass(frozen=True)
class Step:
    """One arrow of the documented diagram, as this connection took it."""

    source: State
    target: State
    at_ns: int | None  # None when the moment is not known
    since_ns: int | None  # when ``source`` was entered, if known
    observed: bool  # False: inferred from other evidence (``how`` says which)
    how: str = ""

    @property
    def duration_ns(self) -> int | None:
        if self.at_ns is None or self.since_ns is None or self.since_ns > self.at_ns:
            return None
        return self.at_ns - self.since_ns

    def to_dict(self) -> dict[str, object]:
        return {
            "from": self.source.value,
            "to": self.target.value,
            "at_ns": self.at_ns,
            "time_in_from_s": None if self.duration_ns is None else self.duration_ns / 1e9,
            "observed": self.observed,
            "how": self.how,
        }


@dataclass
class Connection(Endpoints):
    """One socket's life, as far as synfin has seen it."""

    skaddr: int
    family: int
    netns: int
    start_ns: int
    state: State
    state_ns: int | None
    sport: int = 0
    dport: int = 0
    saddr: bytes = b"\0" * 16
    daddr: bytes = b"\0" * 16
    owner_pid: int = 0
    comm: str = ""
    facts: Fact = field(default_factory=lambda: Fact(0))
    timewait: int = 0  # the timewait socket that took over, while it lives
    steps: list[Step] = field(default_factory=list)
    classification: Classification | None = None
    finished: bool = False  # the whole path is known: CLOSED, and no timewait socket left

    @property
    def key(self) -> tuple[int, int, bytes, int, bytes, int]:
        return (self.netns, self.family, self.saddr, self.sport, self.daddr, self.dport)

    def path(self) -> list[State]:
        if not self.steps:
            return [self.state]
        return [self.steps[0].source, *(step.target for step in self.steps)]

    def take(self, step: Step) -> Step:
        self.steps.append(step)
        self.state = step.target
        self.state_ns = step.at_ns
        return step

    def to_dict(self) -> dict[str, object]:
        return {
            "skaddr": f"{self.skaddr:#x}",
            "netns": self.netns,
            "local": self.local,
            "remote": self.remote,
            "owner_pid": self.owner_pid or None,
            "comm": self.comm or None,
            "path": [state.value for state in self.path()],
            "steps": [step.to_dict() for step in self.steps],
            "classification": self.classification.to_dict() if self.classification else None,
        }


# What the engine tells its caller, in order.
@dataclass(frozen=True)
class StepTaken:
    connection: Connection
    step: Step
    event: Event


@dataclass(frozen=True)
class Noted:
    """Something worth a line that is not a state change: a reset, a timewait hand-over."""

    connection: Connection | None
    text: str
    event: Event


@dataclass(frozen=True)
class Classified:
    connection: Connection
    classification: Classification
    event: Event


@dataclass(frozen=True)
class Finished:
    """The connection is over: CLOSED, and no timewait socket left. Its path is complete."""

    connection: Connection
    event: Event


Output = StepTaken | Noted | Classified | Finished
