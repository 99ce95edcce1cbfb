"""What every scripted-peer test asserts, besides its own story: synfin's counters against the
kernel's in the namespace, and synfin's gauge against sock_diag at quiescence.

Each check is one function, so a test marked for one defect can run the others and the
failure names the one that broke.
"""

from __future__ import annotations

import socket
from typing import Any

from tests.peer.lab import Outcome

FAMILY = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}


def _family(outcome: Outcome[Any]) -> str:
    return FAMILY[outcome.family]


def gauge_matches_census(outcome: Outcome[Any]) -> None:
    """synfin_tcp_connections moved by exactly the sockets sock_diag lists in the namespace."""
    outcome.require_quiet()
    assert outcome.gauge == outcome.census, (
        f"synfin's gauge moved by {outcome.gauge}, sock_diag lists {outcome.census} "
        f"({outcome.noise})"
    )


def opens_match(outcome: Outcome[Any]) -> None:
    """connects_total and accepts_total of the test's port against ActiveOpens and
    PassiveOpens (the port label makes these exact whatever else the host does)."""
    port = str(outcome.port)
    synfin = {
        "ActiveOpens": outcome.synfin("synfin_tcp_connects_total", port=port),
        "PassiveOpens": outcome.synfin("synfin_tcp_accepts_total", port=port),
    }
    kernel = outcome.kernel("ActiveOpens", "PassiveOpens")
    assert synfin == kernel, f"synfin's connects/accepts {synfin}, the kernel's {kernel}"


def resets_match(outcome: Outcome[Any], received: int) -> None:
    """Resets sent against OutRsts; resets received against what the peer sent (Linux has no
    counter of received resets); the abort reasons against TCPAbortOnData/OnClose."""
    sent = "synfin_tcp_resets_sent_total"
    got = outcome.synfin("synfin_tcp_resets_received_total")
    kernel = outcome.kernel("OutRsts", "TCPAbortOnData", "TCPAbortOnClose")
    synfin = {
        "OutRsts": outcome.synfin(sent),
        "TCPAbortOnData": outcome.synfin(sent, reason="tcp_abort_on_data"),
        "TCPAbortOnClose": outcome.synfin(sent, reason="tcp_abort_on_close"),
    }
    assert (synfin, got) == (kernel, received), (
        f"synfin: sent {synfin}, received {got}; kernel: {kernel}, the peer sent {received} "
        f"({outcome.noise})"
    )


def estab_resets_match(outcome: Outcome[Any]) -> None:
    """EstabResets counts ESTABLISHED or CLOSE-WAIT -> CLOSE; so do these transitions."""
    family = _family(outcome)
    name = "synfin_tcp_state_transitions_total"
    moved = sum(
        outcome.synfin(name, family=family, to="closed", **{"from": source})
        for source in ("established", "close_wait")
    )
    kernel = outcome.kernel("EstabResets")["EstabResets"]
    assert moved == kernel, f"synfin: {moved} to closed from established/close_wait; {kernel=}"


def retransmits_match(outcome: Outcome[Any]) -> None:
    """Every retransmission against RetransSegs; SYN and SYN-ACK ones against TCPSynRetrans."""
    total = outcome.synfin("synfin_tcp_retransmits_total")
    syn = outcome.synfin("synfin_tcp_retransmits_total", kind="syn") + outcome.synfin(
        "synfin_tcp_retransmits_total", kind="synack"
    )
    kernel = outcome.kernel("RetransSegs", "TCPSynRetrans")
    synfin = {"RetransSegs": total, "TCPSynRetrans": syn}
    assert synfin == kernel, f"synfin's retransmits {synfin}, the kernel's {kernel}"


def timewait_match(outcome: Outcome[Any]) -> None:
    """Each timewait socket the kernel scheduled (TW, or TWKilled when its timeout is at most
    4 s) is a hand-over synfin saw."""
    outcome.require_quiet()
    moved = outcome.deltas.timewait
    handovers = sum(moved[name] for name in moved if name.startswith("TW_HANDOVER"))
    kernel = outcome.kernel("TW", "TWKilled")
    assert handovers == sum(kernel.values()), f"synfin saw {handovers} hand-overs, kernel {kernel}"


def counters_match(outcome: Outcome[Any], resets_received: int = 0) -> None:
    """All of the above."""
    gauge_matches_census(outcome)
    opens_match(outcome)
    resets_match(outcome, resets_received)
    estab_resets_match(outcome)
    retransmits_match(outcome)
    timewait_match(outcome)
