"""A RST from the peer in every state it can reach the local end in (tests/peer/).

For each state: the documented path, the classification, synfin's
resets_received{state} and the kernel's EstabResets and AttemptFails.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from synfin.engine.states import State
from tests.peer import checks
from tests.peer.lab import PEER_PORT, PeerLab
from tests.peer.observe import EngineView
from tests.peer.packets import Options
from tests.peer.peer import Peer, connected_client, listening
from tests.peer.tun import FAMILIES, REMOTE

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

FAMILY_IDS = ["ipv4", "ipv6"]
S = State
ESTABLISHED_PATH = [S.CLOSED, S.SYN_SENT, S.ESTABLISHED]
by_family = pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)


def refused(lab: PeerLab, family: int) -> Peer:
    sock = lab.net.socket(family)
    sock.setblocking(False)
    sock.connect_ex((REMOTE[family], lab.port))
    peer = Peer(lab.net, family, lab.port)
    peer.expect("S")
    peer.send("R.", seq=0, ack=peer.local.seq(1))  # what a closed port answers
    sock.close()
    return peer


def reset_in_syn_rcvd(lab: PeerLab, family: int, fast_open: bool) -> Peer:
    """A RST answering the SYN-ACK. With Fast Open the SYN-RCVD end is a full child socket;
    without, it is the kernel's request socket."""
    lab.net.sysctl("net.ipv4.tcp_fastopen", 0x202)  # server, no cookie needed
    listener = listening(lab.net, family, lab.port)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 8)
    peer = Peer(lab.net, family, PEER_PORT, local_port=lab.port)
    if fast_open:
        peer.send("S", data=b"tfo", options=Options(mss=1460, fastopen=b""))
    else:
        peer.send("S")
    peer.expect("S.")
    peer.send("R")
    peer.expect_nothing(0.1)
    listener.close()
    return peer


def reset_after(lab: PeerLab, family: int, state: str) -> Peer:
    """An established connection brought to ``state``, then the peer's RST (seq = exactly
    what the local end expects next, else RFC 5961 asks for a challenge ACK instead)."""
    sock, peer = connected_client(lab.net, family, lab.port)
    if state == "fin_wait_1":
        sock.close()
        peer.expect("F.")
    elif state == "fin_wait_2":
        sock.shutdown(socket.SHUT_WR)  # not orphaned: the full socket stays in FIN-WAIT-2
        peer.expect("F.")
        peer.send(".")
    elif state == "closing":
        sock.close()
        fin = peer.expect("F.")
        peer.send("F.", ack=fin.seq)  # a FIN that has not seen the local one: they cross
        peer.expect(".")
    elif state in ("close_wait", "last_ack"):
        peer.send("F.")
        peer.expect(".")
        if state == "last_ack":
            sock.close()
            peer.expect("F.")
    elif state == "timewait_fin_wait_2":
        sock.close()  # orphaned: FIN-WAIT-2 goes on in a timewait socket
        peer.expect("F.")
        peer.send(".")
    elif state == "time_wait":
        sock.close()
        peer.expect("F.")
        peer.send("F.")
        peer.expect(".")
    peer.send("R")
    peer.expect_nothing(0.05)  # a RST in window is never answered
    sock.close()
    return peer


@dataclass(frozen=True)
class Case:
    script: Callable[..., Peer]
    params: dict[str, object]
    path: list[State]
    verdict: tuple[str, str, str | None, str | None]  # open, result, initiator, close
    kernel: dict[str, int]  # EstabResets, AttemptFails
    received: int  # resets_received{state} (0: no full socket, no tracepoint)

    def run(self, scripted, family: int):
        done = all_finished if self.path[-2] in (S.TIME_WAIT, S.FIN_WAIT_2) else None
        return scripted(self.script, family, done=done, **self.params)


def listener_closed(view: EngineView) -> bool:
    return any(seen.listener and seen.verdict for seen in view.connections)


def all_finished(view: EngineView) -> bool:
    return bool(view.sockets()) and all(seen.connection.finished for seen in view.sockets())


RESET_BY_PEER = ("active", "established", "remote", "reset_received")
NO_FAILS = {"EstabResets": 0, "AttemptFails": 0}
CASES = {
    "syn_sent": Case(
        refused, {}, [S.CLOSED, S.SYN_SENT, S.CLOSED],
        ("active", "refused", None, None), {"EstabResets": 0, "AttemptFails": 1}, 1,
    ),
    # tcp_check_req counts the embryonic reset, then tcp_done the child's end: two
    # AttemptFails for one RST (measured on 6.18).
    "syn_rcvd": Case(
        reset_in_syn_rcvd, {"fast_open": True}, [S.LISTEN, S.SYN_RCVD, S.CLOSED],
        ("passive", "reset", None, None), {"EstabResets": 0, "AttemptFails": 2}, 1,
    ),
    "established": Case(
        reset_after, {"state": "established"}, [*ESTABLISHED_PATH, S.CLOSED],
        RESET_BY_PEER, {"EstabResets": 1, "AttemptFails": 0}, 1,
    ),
    "fin_wait_1": Case(
        reset_after, {"state": "fin_wait_1"}, [*ESTABLISHED_PATH, S.FIN_WAIT_1, S.CLOSED],
        RESET_BY_PEER, NO_FAILS, 1,
    ),
    "fin_wait_2": Case(
        reset_after, {"state": "fin_wait_2"},
        [*ESTABLISHED_PATH, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSED], RESET_BY_PEER, NO_FAILS, 1,
    ),
    "close_wait": Case(
        reset_after, {"state": "close_wait"}, [*ESTABLISHED_PATH, S.CLOSE_WAIT, S.CLOSED],
        RESET_BY_PEER, {"EstabResets": 1, "AttemptFails": 0}, 1,
    ),
    "last_ack": Case(
        reset_after, {"state": "last_ack"},
        [*ESTABLISHED_PATH, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED], RESET_BY_PEER, NO_FAILS, 1,
    ),
    "closing": Case(
        reset_after, {"state": "closing"},
        [*ESTABLISHED_PATH, S.FIN_WAIT_1, S.CLOSING, S.CLOSED], RESET_BY_PEER, NO_FAILS, 1,
    ),
    # Timewait sockets have no tracepoint for a RST: it kills them, seen as their timer's
    # cancel; the connection had closed gracefully already.
    "timewait-fin_wait_2": Case(
        reset_after, {"state": "timewait_fin_wait_2"},
        [*ESTABLISHED_PATH, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSED],
        ("active", "established", "local", "graceful"), NO_FAILS, 0,
    ),
    "time_wait": Case(
        reset_after, {"state": "time_wait"},
        [*ESTABLISHED_PATH, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT, S.CLOSED],
        ("active", "established", "local", "graceful"), NO_FAILS, 0,
    ),
}  # fmt: skip


@pytest.mark.parametrize("state", list(CASES))
@by_family
def test_reset_received(scripted, family: int, state: str) -> None:
    case = CASES[state]
    outcome = case.run(scripted, family)
    seen = outcome.view.only()
    assert seen.path == case.path, seen.describe()
    verdict = seen.verdict
    assert verdict is not None
    assert (verdict.open, verdict.result, verdict.initiator, verdict.close) == case.verdict
    if case.received:
        name = State[state.upper()].value
        assert f"RST received in {name}" in seen.notes, seen.describe()
        assert outcome.synfin("synfin_tcp_resets_received_total", state=state) == 1
    else:
        assert "killed" in seen.steps[-1].how, seen.describe()
    assert outcome.kernel("EstabResets", "AttemptFails") == case.kernel
    checks.counters_match(outcome, resets_received=case.received)


@pytest.mark.xfail(
    strict=True,
    reason="issue 14, found here: a RST to a request socket (SYN-RCVD without Fast Open) is "
    "invisible: the kernel counts Tcp AttemptFails +1 and TcpExt EmbryonicRsts +1, synfin "
    'counts no resets_received{state="syn_rcvd"} and shows no connection',
)
@by_family
def test_reset_received_by_a_request_socket(scripted, family: int) -> None:
    outcome = scripted(reset_in_syn_rcvd, family, fast_open=False, done=listener_closed)
    assert outcome.kernel("AttemptFails", "EmbryonicRsts") == {
        "AttemptFails": 1,
        "EmbryonicRsts": 1,
    }
    received = outcome.synfin("synfin_tcp_resets_received_total", state="syn_rcvd")
    assert received == 1, f"resets_received{{state='syn_rcvd'}} moved by {received}"
