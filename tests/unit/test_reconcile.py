"""Ground truth from sock_diag: seeding sockets synfin never saw open, and comparing."""

from __future__ import annotations

import socket

from synfin.engine.reconcile import Difference, Scope, compare, count
from synfin.engine.states import KernelState, State
from synfin.kernel.sock_diag import KernelSocket
from synfin.records.addresses import pack_address


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
    sock = KernelSocket(7, socket.AF_INET, KernelState.ESTABLISHED, v4, 40000, v4, 80)
    assert Scope().covers(sock)
    assert Scope(ports=frozenset({80})).covers(sock)
    assert not Scope(ports=frozenset({443})).covers(sock)
    assert not Scope(family=socket.AF_INET6).covers(sock)
    assert not Scope(netns=frozenset({8})).covers(sock)
    assert count([sock, sock]) == {(7, State.ESTABLISHED): 2}
