"""Ground truth from sock_diag: seeding sockets synfin never saw open, and comparing."""

from __future__ import annotations

import os
import socket
import time

import pytest

from synfin.engine.lifecycle import Engine
from synfin.engine.reconcile import Reconciler, Scope
from synfin.engine.states import State
from synfin.kernel.sock_diag import census
from synfin.kernel.state_probe import TcpProbe
from synfin.lab.hosts import HostPair
from synfin.lab.plays import ACK_SEPARATELY, pair, read_to_eof
from synfin.records.events import EventKind

from .conftest import Recorder


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
    reconciler = Reconciler(engine, census, Scope(ports=frozenset({port}), netns=inodes))
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
