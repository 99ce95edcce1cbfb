"""``synfin lab``: build two test hosts in network namespaces and play a named TCP behaviour
between them, saying what synfin should report. Namespaces are removed on every exit path.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from synfin.engine.classify import LISTENER
from synfin.lab.hosts import HostPair
from synfin.lab.scenarios import SCENARIOS, Expected, Scenario
from synfin.lab.storms import STORMS, Storm

NAMES = sorted([*SCENARIOS, *STORMS])
PORTS_PER_LAB = 1000  # runs take ports from --port on, reusing them after this many


def describe_side(role: str, expected: Expected) -> str:
    path = " -> ".join(state.value for state in expected.path)
    verdict = f"{expected.open} open, {expected.result}"
    if expected.close:
        verdict += f", {expected.initiator} {expected.close.replace('_', '-')}"
    inferred = ", ".join(f"{a} ~> {b}" for a, b in expected.inferable)
    return f"{role}: {path} ({verdict})" + (f"; may be inferred: {inferred}" if inferred else "")


def expectations(name: str, count: int | None = None) -> list[str]:
    """What synfin should report for one run of ``name``, as lines for people."""
    if name in STORMS:
        storm = STORMS[name]
        return [storm.expects.format(count=count or storm.count)]
    scenario: Scenario = SCENARIOS[name]
    lines = [describe_side("client", scenario.client)]
    lines.append(
        describe_side("server", scenario.server) if scenario.server else "server: no connection"
    )
    kernel = "; ".join(
        f"{role} {', '.join(f'{k} +{v}' for k, v in counters.items())}"
        for role, counters in scenario.snmp.items()
    )
    lines.append(f"kernel (/proc/net/snmp): {kernel}")
    return [line for line in lines if LISTENER not in line]


def summary(name: str) -> str:
    return STORMS[name].summary if name in STORMS else SCENARIOS[name].summary


def play(name: str, hosts: HostPair, family: int, port: int, count: int | None = None) -> None:
    if name in STORMS:
        storm: Storm = STORMS[name]
        storm.run(hosts, family, port, count or storm.count)
    else:
        SCENARIOS[name].run(hosts, family, port)


@dataclass
class Lab:
    """The test hosts, alive for the duration of a ``with`` block."""

    prefix: str = f"synlab{os.getpid()}"

    def __post_init__(self) -> None:
        self.hosts = HostPair(prefix=self.prefix)

    def __enter__(self) -> Lab:
        self.hosts.create()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.hosts.destroy()

    def runs(
        self,
        names: list[str],
        family: int,
        port: int,
        loop: bool,
        per_minute: float,
        stopping: Callable[[], bool],
    ) -> Iterator[tuple[str, int]]:
        """Play each scenario in turn (forever with ``loop``, at most ``per_minute``); yield
        (name, port) after each. Every run gets its own port so their sockets never mix."""
        gap = 60.0 / per_minute
        run = 0
        while not stopping():
            for name in names:
                if stopping():
                    return
                started = time.monotonic()
                this_port = port + run % PORTS_PER_LAB
                play(name, self.hosts, family, this_port)
                run += 1
                yield name, this_port
                while loop and not stopping() and time.monotonic() - started < gap:
                    time.sleep(0.1)
            if not loop:
                return


FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
