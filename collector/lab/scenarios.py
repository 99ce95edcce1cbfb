"""Named TCP behaviours between two test hosts, each with what synfin should report.

Every scenario runs one play of collector/lab/plays.py between the client and server
namespaces of a HostPair and states, as data, the documented path and classification expected
for each end and the change the kernel's own Tcp counters should show in each namespace. The
integration tests run them against the live probe; their recordings replay through the engine
in the unit tests; the lab runs them for people.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from synfin.engine.states import State
from synfin.kernel.namespaces import entered
from synfin.kernel.procfs import ProcNet
from synfin.lab.hosts import HostPair
from synfin.lab.plays import (
    client_closes,
    half_close,
    keepalive,
    refused,
    reset_abort,
    server_closes,
    simultaneous_close,
    syn_retransmitted,
    syn_timeout,
    time_wait_killed,
    unread_data_abort,
)

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


def snmp_counters(namespace: str) -> dict[str, int]:
    """The Tcp section of /proc/net/snmp as seen inside ``namespace``."""
    with entered(namespace):
        return ProcNet().tcp()


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
