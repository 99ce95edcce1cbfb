"""Opening handshakes two local ends cannot produce, against a scripted peer (tests/peer/):
simultaneous open, TCP Fast Open on both sides, SYN-ACK retransmissions.

Each test checks the documented path, the classification, and synfin's counters against the
kernel's own in the test's namespace (tests/peer/checks.py). The tests marked xfail fail today
because of a defect of issue 14; the mark goes with the fix.
"""

from __future__ import annotations

import socket

import pytest

from synfin.engine.states import State
from tests.peer import checks
from tests.peer.lab import PEER_PORT, PeerLab
from tests.peer.observe import EngineView
from tests.peer.packets import Options
from tests.peer.peer import Peer, listening, wait_for_kernel_timeout
from tests.peer.tun import FAMILIES, REMOTE

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

FAMILY_IDS = ["ipv4", "ipv6"]
TCP_FASTOPEN_CONNECT = 30  # include/uapi/linux/tcp.h (not in Python's socket module)
# net.ipv4.tcp_fastopen bits: 0x1 client, 0x2 server, 0x4 client without a cookie,
# 0x200 server accepts data on a SYN without a cookie.
FASTOPEN_CLIENT_NO_COOKIE = 0x1 | 0x4
FASTOPEN_SERVER_NO_COOKIE = 0x2 | 0x200
S = State
by_family = pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)


def listener_closed(view: EngineView) -> bool:
    return any(seen.listener and seen.verdict for seen in view.connections)


# -- simultaneous open --------------------------------------------------------------------------


def simultaneous_open(lab: PeerLab, family: int) -> Peer:
    """connect(); the peer answers the SYN with its own SYN, then with a SYN-ACK."""
    sock = lab.net.socket(family)
    sock.setblocking(False)
    sock.connect_ex((REMOTE[family], lab.port))
    peer = Peer(lab.net, family, lab.port)
    peer.expect("S")
    peer.send("S")  # crosses the local SYN: SYN-SENT -> SYN-RCVD
    peer.expect("S.", seq=peer.local.seq(0), ack=peer.seq(1))
    peer.send("S.", ack=peer.local.seq(1))
    peer.expect(".", ack=peer.seq(1))
    sock.close()
    peer.expect("F.")
    peer.send("F.")  # acknowledges the FIN and closes: TIME-WAIT at once
    peer.expect(".")
    return peer


@by_family
def test_simultaneous_open_takes_the_syn_rcvd_path(scripted, family: int) -> None:
    outcome = scripted(simultaneous_open, family)
    seen = outcome.view.only()
    assert seen.path == [
        S.CLOSED, S.SYN_SENT, S.SYN_RCVD, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT
    ], seen.describe()  # fmt: skip
    assert all(step.observed for step in seen.steps), seen.describe()
    verdict = seen.verdict
    assert verdict is not None
    assert (verdict.open, verdict.result, verdict.initiator, verdict.close) == (
        "simultaneous", "established", "local", "graceful"
    )  # fmt: skip
    assert outcome.kernel("ActiveOpens", "PassiveOpens") == {"ActiveOpens": 1, "PassiveOpens": 0}
    checks.gauge_matches_census(outcome)
    checks.resets_match(outcome, received=0)
    checks.retransmits_match(outcome)
    checks.timewait_match(outcome)


# issue 14 defect 3a, fixed in 505b4f1: a simultaneous open was no connect.
@by_family
def test_simultaneous_open_is_a_connect(scripted, family: int) -> None:
    checks.opens_match(scripted(simultaneous_open, family))


# -- TCP Fast Open, client ----------------------------------------------------------------------


def fast_open_connect_then_close(lab: PeerLab, family: int) -> Peer:
    """TCP_FASTOPEN_CONNECT defers the SYN to the first write; close() comes first."""
    lab.net.sysctl("net.ipv4.tcp_fastopen", FASTOPEN_CLIENT_NO_COOKIE)
    sock = lab.net.socket(family)
    sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
    sock.connect((REMOTE[family], lab.port))  # returns at once: nothing sent yet
    peer = Peer(lab.net, family, lab.port)
    peer.expect_nothing(0.2)
    sock.close()
    peer.expect_nothing(0.3)  # no SYN, no RST: the connection never reached the wire
    return peer


@by_family
def test_fast_open_connect_closed_before_writing_sends_nothing(scripted, family: int) -> None:
    outcome = scripted(fast_open_connect_then_close, family)
    seen = outcome.view.only()
    # The kernel does set SYN_SENT at connect(): the path is what it announced.
    assert seen.path == [S.CLOSED, S.SYN_SENT, S.CLOSED], seen.describe()
    assert outcome.kernel("ActiveOpens", "AttemptFails", "OutRsts") == {
        "ActiveOpens": 0, "AttemptFails": 0, "OutRsts": 0
    }  # fmt: skip
    checks.gauge_matches_census(outcome)
    checks.resets_match(outcome, received=0)
    checks.retransmits_match(outcome)


# issue 14 defect 3b, fixed in 505b4f1: it counted connects_total{result="other"}.
@by_family
def test_fast_open_connect_closed_before_writing_is_no_connect(scripted, family: int) -> None:
    checks.opens_match(scripted(fast_open_connect_then_close, family))


# -- TCP Fast Open, server ----------------------------------------------------------------------


def fast_open_server(lab: PeerLab, family: int, third_ack: bool) -> Peer:
    """The peer's SYN carries data (and a cookie request); the server accepts it without a
    cookie. With ``third_ack`` the handshake completes and the server closes; without, the
    server's SYN-ACK retransmissions run out."""
    lab.net.sysctl("net.ipv4.tcp_fastopen", FASTOPEN_SERVER_NO_COOKIE)
    # A Fast Open child retries its SYN-ACK tcp_synack_retries + 1 times: 0 makes it one
    # retransmission (after 1 s) and the end at 3 s.
    lab.net.sysctl("net.ipv4.tcp_synack_retries", 0)
    listener = listening(lab.net, family, lab.port)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 8)
    peer = Peer(lab.net, family, PEER_PORT, local_port=lab.port)
    peer.send("S", data=b"hello", options=Options(mss=1460, fastopen=b""))
    peer.expect("S.", ack=peer.seq(6))  # the SYN and its 5 bytes of data, both acknowledged
    listener.settimeout(2)
    child, _ = listener.accept()  # already there: the child exists from the SYN on
    lab.net.adopt(child)
    assert child.recv(5) == b"hello"
    if third_ack:
        peer.send(".")
        child.close()
        peer.expect("F.")
        peer.send("F.")
        peer.expect(".")
    else:
        peer.expect("S.", timeout=2)  # the one retransmission
        wait_for_kernel_timeout(child)
        child.close()
    return peer


fast_open_cases = pytest.mark.parametrize(
    "third_ack", [True, False], ids=["third-ack", "no-third-ack"]
)


@fast_open_cases
@by_family
def test_fast_open_child_is_seen_at_the_syn(scripted, family: int, third_ack: bool) -> None:
    outcome = scripted(fast_open_server, family, third_ack=third_ack)
    seen = outcome.view.only()
    step = seen.step(S.LISTEN, S.SYN_RCVD)
    assert step.observed, seen.describe()


@by_family
def test_fast_open_server_with_third_ack(scripted, family: int) -> None:
    outcome = scripted(fast_open_server, family, third_ack=True)
    seen = outcome.view.only()
    assert seen.path == [
        S.LISTEN, S.SYN_RCVD, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT
    ], seen.describe()  # fmt: skip
    verdict = seen.verdict
    assert verdict is not None
    assert (verdict.open, verdict.result, verdict.initiator, verdict.close) == (
        "passive", "established", "local", "graceful"
    )  # fmt: skip
    assert outcome.kernel("PassiveOpens", "TCPFastOpenPassive") == {
        "PassiveOpens": 1, "TCPFastOpenPassive": 1
    }  # fmt: skip
    checks.counters_match(outcome)


@by_family
def test_fast_open_server_without_third_ack_times_out(scripted, family: int) -> None:
    outcome = scripted(fast_open_server, family, third_ack=False)
    seen = outcome.view.only()
    assert seen.path == [S.LISTEN, S.SYN_RCVD, S.CLOSED], seen.describe()
    verdict = seen.verdict
    assert verdict is not None
    assert (verdict.open, verdict.result) == ("passive", "timeout"), verdict
    assert outcome.kernel("PassiveOpens", "AttemptFails", "TCPAbortOnTimeout", "TCPSynRetrans") == {
        "PassiveOpens": 1,
        "AttemptFails": 1,
        "TCPAbortOnTimeout": 1,
        "TCPSynRetrans": 1,
    }
    assert outcome.synfin("synfin_tcp_retransmits_total", kind="synack", state="syn_rcvd") == 1
    checks.counters_match(outcome)


@by_family
def test_fast_open_server_synack_retransmits_in_the_verdict(scripted, family: int) -> None:
    outcome = scripted(fast_open_server, family, third_ack=False)
    verdict = outcome.view.only().verdict
    assert verdict is not None
    assert verdict.syn_retransmits == outcome.kernel("TCPSynRetrans")["TCPSynRetrans"], verdict


# -- SYN-ACK retransmission ---------------------------------------------------------------------


def synack_retransmitted(lab: PeerLab, family: int, third_ack: bool) -> Peer:
    """The peer's SYN gets a SYN-ACK, and one retransmission of it (tcp_synack_retries=1).
    With ``third_ack`` the peer then completes the handshake and the server closes; without,
    the request socket expires (3 s after the SYN) and a late ACK meets a RST."""
    lab.net.sysctl("net.ipv4.tcp_synack_retries", 1)
    listener = listening(lab.net, family, lab.port)
    peer = Peer(lab.net, family, PEER_PORT, local_port=lab.port)
    peer.send("S")
    first = peer.expect("S.", ack=peer.seq(1))
    peer.expect("S.", seq=first.seq, timeout=2)  # the same SYN-ACK again, after 1 s
    if third_ack:
        peer.send(".")
        listener.settimeout(1)
        child, _ = listener.accept()
        lab.net.adopt(child)
        child.close()
        peer.expect("F.")
        peer.send("F.")
        peer.expect(".")
    else:
        peer.expect_nothing(2.5)  # the request expires with no segment of its own
        peer.send(".")
        peer.expect("R")  # no request left: the listener answers the ACK with a RST
        listener.close()
    return peer


@by_family
def test_synack_retransmission_then_third_ack(scripted, family: int) -> None:
    outcome = scripted(synack_retransmitted, family, third_ack=True)
    seen = outcome.view.only()
    assert seen.path == [
        S.LISTEN, S.SYN_RCVD, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT
    ], seen.describe()  # fmt: skip
    verdict = seen.verdict
    assert verdict is not None
    assert (verdict.open, verdict.result) == ("passive", "established")
    assert verdict.syn_retransmits == 1 == outcome.kernel("TCPSynRetrans")["TCPSynRetrans"]
    assert outcome.synfin("synfin_tcp_retransmits_total", kind="synack", state="syn_rcvd") == 1
    checks.counters_match(outcome)


@by_family
def test_synack_retransmission_then_the_request_expires(scripted, family: int) -> None:
    outcome = scripted(
        synack_retransmitted, family, third_ack=False, done=listener_closed, timeout=2
    )
    # A request socket has no state event: the engine sees the listener alone, and the
    # request's end only as the RST its late ACK got.
    assert outcome.view.sockets() == [], [s.describe() for s in outcome.view.sockets()]
    assert outcome.kernel("PassiveOpens", "TCPSynRetrans", "OutRsts") == {
        "PassiveOpens": 0, "TCPSynRetrans": 1, "OutRsts": 1
    }  # fmt: skip
    assert outcome.synfin("synfin_tcp_retransmits_total", kind="synack", state="syn_rcvd") == 1
    assert outcome.synfin("synfin_tcp_resets_sent_total", state="listen") == 1
    checks.counters_match(outcome)
