"""Ground truth from sock_diag: seeding sockets synfin never saw open, and comparing."""

from __future__ import annotations

import os
import socket
import time

import pytest

from collector.events import EventKind, pack_address
from collector.lifecycle import Engine
from collector.netns import HostPair
from collector.probes import TcpProbe
from collector.scenarios import ACK_SEPARATELY, pair, read_to_eof
from collector.snapshot import Difference, KernelSocket, Reconciler, Scope, compare, count
from collector.states import State

from .conftest import Recorder


def test_compare_reports_every_difference() -> None:
    belief = {(1, State.ESTABLISHED): 2, (1, State.TIME_WAIT): 1}
    truth = {(1, State.ESTABLISHED): 2, (1, State.TIME_WAIT): 3, (2, State.LISTEN): 1}
    assert compare(belief, truth) == [
        Difference(1, State.TIME_WAIT, synfin=1, kernel=3),
        Difference(2, State.LISTEN, synfin=0, kernel=1),
    ]
    assert compare(truth, truth) == []


def test_scope_filters_like_the_stream() -> None:
    v4 = pack_address("192.0.2.1")[1]
    sock = KernelSocket(7, socket.AF_INET, State.ESTABLISHED, v4, 40000, v4, 80)
    assert Scope().covers(sock)
    assert Scope(ports=frozenset({80})).covers(sock)
    assert not Scope(ports=frozenset({443})).covers(sock)
    assert not Scope(family=socket.AF_INET6).covers(sock)
    assert not Scope(netns=frozenset({8})).covers(sock)
    assert count([sock, sock]) == {(7, State.ESTABLISHED): 2}


@pytest.mark.bpf
@pytest.mark.netns
def test_sockets_from_before_synfin_are_known_and_followed(hosts: HostPair, port: int) -> None:
    listener, client, accepted = pair(hosts, socket.AF_INET, port)
    # synfin starts now, with a probe of its own: what came before is not in its maps.
    with TcpProbe() as probe:
        recorder = Recorder(probe)
        recorder.reset(ports=(port,))
        follow_preexisting(recorder, hosts, port, listener, client, accepted)


def follow_preexisting(
    recorder: Recorder,
    hosts: HostPair,
    port: int,
    listener: socket.socket,
    client: socket.socket,
    accepted: socket.socket,
) -> None:
    engine = Engine()
    inodes = frozenset(
        os.stat(f"/run/netns/{ns}").st_ino
        for ns in (hosts.client.namespace, hosts.server.namespace)
    )
    reconciler = Reconciler(engine, Scope(ports=frozenset({port}), netns=inodes))
    assert reconciler.seed() == 3
    assert reconciler.check() == ([], 3)
    assert sorted(state.value for state in engine.preexisting.values()) == [
        "ESTABLISHED",
        "ESTABLISHED",
        "LISTEN",
    ]

    client.close()
    read_to_eof(accepted)
    time.sleep(ACK_SEPARATELY)
    accepted.close()
    listener.close()
    events = recorder.wait_for(lambda evs: sum(e.kind == EventKind.SOCKET_END for e in evs) >= 3)
    verdicts = {}
    for event in events:
        for output in engine.feed(event):
            if getattr(output, "classification", None):
                verdicts[output.connection.local] = output.connection
    client_conn = next(
        conn for local, conn in verdicts.items() if local.startswith(hosts.client.ipv4)
    )
    assert client_conn.classification.open == "unknown"  # it opened before synfin watched
    assert client_conn.classification.close == "graceful"
    assert client_conn.path()[:3] == [State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2]
    assert engine.preexisting == {}  # each was matched to its first event
    differences, compared = reconciler.check()
    assert differences == [] and compared == 1  # the client's TIME-WAIT
