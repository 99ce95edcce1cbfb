"""tp_btf through synfin's own loader: probes/feature_tp_btf.c on sock:inet_sock_set_state.

Each scenario runs on loopback inside a network namespace of its own, and the probe counts
only that namespace (its netns filter), so other tests and other processes on the machine
add nothing. The counters are slot ``owned * 16 + newstate`` (probes/feature_tp_btf.c).
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from synfin.kernel import tracing_loader
from synfin.kernel.btf import BTF
from synfin.kernel.namespaces import NETNS_DIR, entered
from synfin.kernel.tracing_loader import AttachedProgram, TracingLoadError
from synfin.lab.hosts import ip

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

STATES = 16
SOCKETS, CLOSED_WITH_ERROR, NO_STORAGE = 2 * STATES, 2 * STATES + 1, 2 * STATES + 2
ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2 = 1, 2, 3, 4, 5
CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN = 7, 8, 9, 10
LOCALHOST = "127.0.0.1"

Counts = dict[int, int]


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    name = f"synfin-tpbtf{os.getpid()}"
    ip("netns", "add", name)
    try:
        ip("link", "set", "lo", "up", namespace=name)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="module")
def probe(namespace: str) -> Iterator[Any]:
    """The feature probe compiled by bcc, counting only the test namespace."""
    bpf = tracing_loader.compile_feature_probe()
    bpf[b"netns_filter"][ctypes.c_int(0)] = ctypes.c_uint32(os.stat(NETNS_DIR / namespace).st_ino)
    yield bpf
    bpf.cleanup()


@pytest.fixture
def attached(probe: Any) -> Iterator[AttachedProgram]:
    probe[b"counts"].clear()
    with tracing_loader.load_tp_btf(probe, tracing_loader.FEATURE_FUNCTION) as program:
        yield program


def read(bpf: Any) -> Counts:
    """Nonzero counters, summed over CPUs."""
    return {key.value: sum(values) for key, values in bpf[b"counts"].items() if sum(values)}


def settled(bpf: Any, done: Callable[[Counts], bool], timeout: float = 5.0) -> Counts:
    """The counters once ``done`` holds, read again a little later: a transition counted
    twice, or late, shows in the second reading."""
    deadline = time.monotonic() + timeout
    while not done(read(bpf)) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    return read(bpf)


def by_state(counts: Counts, owned: int | None = None) -> dict[int, int]:
    """Transitions into each state (with the socket owned, not owned, or either)."""
    totals: dict[int, int] = {}
    for slot, count in counts.items():
        if slot < SOCKETS and owned in (None, slot // STATES):
            totals[slot % STATES] = totals.get(slot % STATES, 0) + count
    return totals


def transitions(counts: Counts) -> int:
    return sum(by_state(counts).values())


def connect_and_close(namespace: str, port: int, connections: int) -> None:
    """Client closes first, the server after reading the end of stream, then the listener."""
    with entered(namespace):
        listener = socket.create_server((LOCALHOST, port))
        for _ in range(connections):
            client = socket.create_connection((LOCALHOST, port))
            server, _address = listener.accept()
            client.close()
            # Wait for the FIN without holding the socket (select takes no lock; recv would
            # make a FIN arriving meanwhile go through the backlog, with the socket owned).
            assert select.select([server], [], [], 5)[0]
            assert server.recv(1) == b""
            server.close()
        listener.close()


def test_each_transition_of_a_connection_is_counted_once(
    probe: Any, attached: AttachedProgram, namespace: str
) -> None:
    connections = 3
    connect_and_close(namespace, 5000, connections)
    per_connection = {SYN_SENT: 1, SYN_RECV: 1, ESTABLISHED: 2, FIN_WAIT1: 1, FIN_WAIT2: 1}
    per_connection |= {CLOSE_WAIT: 1, LAST_ACK: 1, CLOSE: 2}  # client and server child
    expected = {state: count * connections for state, count in per_connection.items()}
    expected[LISTEN] = 1
    expected[CLOSE] += 1  # the listener
    counts = settled(probe, lambda c: transitions(c) >= sum(expected.values()))
    assert by_state(counts) == expected
    # One storage entry per socket (client, server child, listener), however many events.
    assert counts.get(SOCKETS) == 2 * connections + 1
    assert counts.get(NO_STORAGE, 0) == 0
    assert counts.get(CLOSED_WITH_ERROR, 0) == 0


def test_owned_tells_the_applications_calls_from_softirq(
    probe: Any, attached: AttachedProgram, namespace: str
) -> None:
    connect_and_close(namespace, 5001, 1)
    counts = settled(probe, lambda c: transitions(c) >= 12)
    owned, not_owned = by_state(counts, owned=1), by_state(counts, owned=0)
    # connect(), listen() and close() run with the socket's lock held by the process.
    for state in (SYN_SENT, LISTEN, FIN_WAIT1, LAST_ACK):
        assert (owned.get(state), not_owned.get(state)) == (1, None), state
    # The child is created by an arriving ACK, and the peer's FIN arrives at an idle socket.
    for state in (SYN_RECV, CLOSE_WAIT):
        assert (owned.get(state), not_owned.get(state)) == (None, 1), state


def test_a_handshake_completed_from_a_timer_is_not_owned(
    probe: Any, attached: AttachedProgram, namespace: str
) -> None:
    """On loopback the SYN-ACK arrives while connect() still holds the socket and is handled
    in release_sock (owned). A SYN dropped by a full accept queue is retransmitted by a timer
    after connect() returned, so the client's SYN_SENT -> ESTABLISHED runs in softirq."""
    with entered(namespace):
        listener = socket.create_server((LOCALHOST, 5002), backlog=0)
        first = socket.create_connection((LOCALHOST, 5002))  # fills the accept queue
        late = socket.socket()
        late.setblocking(False)
        assert late.connect_ex((LOCALHOST, 5002)) == 115  # EINPROGRESS
        time.sleep(0.1)
        assert select.select([], [late], [], 0)[1] == []  # its SYN was dropped: still pending
        probe[b"counts"].clear()
        accepted, _address = listener.accept()  # room for the retransmitted SYN (~1 s)
        _readable, writable, _errors = select.select([], [late], [], 5)
        assert writable and late.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        # The SYN is resent by a timer (about 1 s, longer on a loaded machine).
        counts = settled(probe, lambda c: by_state(c).get(ESTABLISHED, 0) >= 2, timeout=20)
        for sock in (first, late, accepted, listener):
            sock.close()
    # The late client and its server child, both in softirq.
    assert by_state(counts, owned=0).get(ESTABLISHED) == 2
    assert by_state(counts, owned=1).get(ESTABLISHED) is None


def test_a_refused_connect_closes_with_its_error(
    probe: Any, attached: AttachedProgram, namespace: str
) -> None:
    with entered(namespace), socket.socket() as client:
        assert client.connect_ex((LOCALHOST, 5003)) == 111  # ECONNREFUSED: nobody listens
    counts = settled(probe, lambda c: by_state(c).get(CLOSE, 0) >= 1)
    assert by_state(counts) == {SYN_SENT: 1, CLOSE: 1}
    assert counts.get(CLOSED_WITH_ERROR) == 1  # sk_err was ECONNREFUSED at -> CLOSE


def bpftool_knows(program_id: int) -> bool:
    command = ["bpftool", "prog", "show", "id", str(program_id)]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool is not installed")
def test_close_detaches_and_unloads(probe: Any, namespace: str) -> None:
    probe[b"counts"].clear()
    program = tracing_loader.load_tp_btf(probe, tracing_loader.FEATURE_FUNCTION)
    with program:
        assert bpftool_knows(program.prog_id)
        connect_and_close(namespace, 5004, 1)
        before = settled(probe, lambda c: transitions(c) >= 12)
    assert program.prog_fd == program.link_fd == -1
    program.close()  # a second close does nothing
    deadline = time.monotonic() + 5  # the kernel frees the program after an RCU grace period
    while bpftool_knows(program.prog_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not bpftool_knows(program.prog_id)
    connect_and_close(namespace, 5005, 1)
    time.sleep(0.2)
    assert read(probe) == before


def test_the_wrong_tracepoint_fails_with_the_verifiers_reason(probe: Any) -> None:
    # sched_switch's first argument is a bool, not a socket: reading through it is refused.
    with pytest.raises(TracingLoadError) as failure:
        tracing_loader.load_tp_btf(probe, tracing_loader.FEATURE_FUNCTION, "sched_switch")
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("BPF_PROG_LOAD of count_state_change (attach_btf_id ")
    assert "EACCES" in message
    assert re.search(r"verifier: R\d+ invalid mem access '(scalar|inv)'", message)
    assert "processed " in failure.value.log  # the whole log, for whoever needs more


def test_an_attach_id_that_is_no_tracepoint_is_named(probe: Any) -> None:
    bytecode = probe.dump_func(tracing_loader.FEATURE_FUNCTION.encode())
    sock = BTF.from_file().struct_id("sock")
    with pytest.raises(TracingLoadError, match=f"EINVAL .*verifier: attach_btf_id {sock} is not"):
        tracing_loader.load_tracing_program(bytecode, "bad_attach", sock)


def test_unknown_names_are_named(probe: Any) -> None:
    with pytest.raises(TracingLoadError, match="no tracepoint no_such_event in this kernel's"):
        tracing_loader.load_tp_btf(probe, tracing_loader.FEATURE_FUNCTION, "no_such_event")
    with pytest.raises(TracingLoadError, match="bcc has no bytecode for no_such_function"):
        tracing_loader.load_tp_btf(probe, "no_such_function")


def test_the_feature_check_passes_here() -> None:
    assert tracing_loader.tp_btf_available() == (True, "")
