"""The real probe in the running kernel, watching real connections between two namespaces."""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from synfin.engine.states import PASSIVE_OPEN_PASSIVE_CLOSE, State, documented
from synfin.lab.hosts import HostPair
from synfin.records.addresses import AF_INET, AF_INET6
from synfin.records.events import Event, EventKind

from .conftest import Recorder

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

CLIENT_PATH = [
    State.CLOSED,
    State.SYN_SENT,
    State.ESTABLISHED,
    State.FIN_WAIT_1,
    State.FIN_WAIT_2,
    State.CLOSED,  # the kernel hands the rest to a timewait socket: no TIME-WAIT event
]
SERVER_PATH = list(PASSIVE_OPEN_PASSIVE_CLOSE)


def client_closes_first(hosts: HostPair, family: int, port: int) -> None:
    """One connection from client to server; the client closes first, then the server."""
    listener = hosts.server.socket(family)
    listener.bind((hosts.server.address(family), port))
    listener.listen()
    client = hosts.client.socket(family)
    client.connect((hosts.server.address(family), port))
    accepted, _ = listener.accept()
    client.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert accepted.recv(100)
    client.close()
    assert accepted.recv(100) == b""  # the client's FIN has arrived: server in CLOSE-WAIT
    accepted.close()
    listener.close()


def state_changes(events: list[Event]) -> list[Event]:
    """The records of sock:inet_sock_set_state (not the timewait timers' or the ends')."""
    return [e for e in events if e.kind == EventKind.STATE_CHANGE and not e.about_timewait]


def transition(event: Event) -> tuple[State, State]:
    return documented(event.oldstate), documented(event.newstate)


def paths_by_socket(events: list[Event]) -> dict[int, list[State]]:
    """Kernel transitions per socket, as the tracepoint reports them (no reconstruction)."""
    paths: dict[int, list[State]] = {}
    for event in state_changes(events):
        paths.setdefault(event.skaddr, [documented(event.oldstate)]).append(
            documented(event.newstate)
        )
    return paths


def connection_done(events: list[Event]) -> bool:
    ends = sum(1 for e in events if e.kind == EventKind.SOCKET_END)
    return ends >= 3  # client, accepted child, listener


@pytest.mark.parametrize("family", [AF_INET, AF_INET6], ids=["ipv4", "ipv6"])
def test_both_sides_follow_the_documented_states(
    recorder: Recorder, hosts: HostPair, port: int, family: int
) -> None:
    recorder.reset(ports=(port,))
    client_closes_first(hosts, family, port)
    events = recorder.wait_for(connection_done)

    assert recorder.probe.records_malformed() == 0  # every record was EVENT_SIZE long
    assert {e.family for e in events} == {family}
    paths = paths_by_socket(events)
    assert sorted(paths.values(), key=len) == [
        [State.CLOSED, State.LISTEN, State.CLOSED],
        CLIENT_PATH,
        SERVER_PATH,
    ]

    client = next(e for e in events if transition(e) == (State.SYN_SENT, State.ESTABLISHED))
    server = next(e for e in events if transition(e) == (State.SYN_RCVD, State.ESTABLISHED))
    assert client.local.endswith(f":{client.sport}") and client.dport == port
    assert client.saddr == server.daddr and client.daddr == server.saddr
    assert (server.sport, server.dport) == (port, client.sport)


def test_process_is_named_only_in_process_context(
    recorder: Recorder, hosts: HostPair, port: int
) -> None:
    recorder.reset(ports=(port,))
    client_closes_first(hosts, AF_INET, port)
    events = recorder.wait_for(connection_done)
    by_transition = {transition(e): e for e in state_changes(events)}

    # Syscalls of this process: connect, listen and the two closes.
    for step in [
        (State.CLOSED, State.SYN_SENT),
        (State.CLOSED, State.LISTEN),
        (State.ESTABLISHED, State.FIN_WAIT_1),
        (State.CLOSE_WAIT, State.LAST_ACK),
    ]:
        event = by_transition[step]
        assert event.in_process_context, step
        assert event.pid == os.getpid()
        assert event.comm
    # The accepted socket is created by the arriving third ACK, in softirq. On veth that
    # softirq runs on top of this very process (it sent the ACK), so a PID taken blindly
    # would name it: the probe must not. Its owner is carried from the listener instead.
    child = by_transition[(State.LISTEN, State.SYN_RCVD)]
    assert not child.in_process_context
    assert child.pid == 0
    assert child.owner_pid == os.getpid()


def test_time_in_old_state_is_measured_and_blank_when_unseen(
    recorder: Recorder, hosts: HostPair, port: int
) -> None:
    recorder.reset(ports=(port,))
    listener = hosts.server.socket(AF_INET)
    listener.bind((hosts.server.ipv4, port))
    listener.listen()
    client = hosts.client.socket(AF_INET)
    client.connect((hosts.server.ipv4, port))
    accepted, _ = listener.accept()
    time.sleep(0.2)
    client.close()
    accepted.close()
    listener.close()
    events = recorder.wait_for(connection_done)
    by_transition = {transition(e): e for e in state_changes(events)}

    # Nothing saw these sockets enter CLOSED or the child enter LISTEN: unknown, not zero.
    assert by_transition[(State.CLOSED, State.SYN_SENT)].time_in_old_state_ns is None
    assert by_transition[(State.LISTEN, State.SYN_RCVD)].time_in_old_state_ns is None
    established = by_transition[(State.ESTABLISHED, State.FIN_WAIT_1)].time_in_old_state_ns
    assert established is not None and 0.2e9 <= established < 10e9


def test_family_filter_keeps_only_that_family(
    recorder: Recorder, hosts: HostPair, port: int
) -> None:
    recorder.reset(ports=(port, port + 1000), family=AF_INET6)
    client_closes_first(hosts, AF_INET, port + 1000)
    client_closes_first(hosts, AF_INET6, port)
    events = recorder.wait_for(connection_done)
    time.sleep(0.2)
    recorder.probe.poll(50)
    assert {e.family for e in recorder.events()} == {AF_INET6}
    assert {e.sport for e in events if transition(e) == (State.CLOSED, State.LISTEN)} == {port}


def test_port_filter_drops_other_ports_from_the_stream_only(
    recorder: Recorder, hosts: HostPair, port: int
) -> None:
    recorder.reset(ports=(port,))
    before = recorder.probe.transition_counts()
    client_closes_first(hosts, AF_INET, port + 1)  # not the filtered port
    time.sleep(0.2)
    recorder.probe.poll(50)
    assert recorder.events() == []
    after = recorder.probe.transition_counts()
    # The counters still saw it: at least the client's and server's eleven transitions.
    delta = sum(after.values()) - sum(before.values())
    assert delta >= 12


def transition_key(event: Event) -> tuple[int, int, int]:
    return (event.oldstate, event.newstate, event.family)


def transition_counts(events: list[Event]) -> Counter[tuple[int, int, int]]:
    return Counter(transition_key(e) for e in state_changes(events))


def test_in_kernel_counters_agree_with_the_events_received(
    recorder: Recorder, hosts: HostPair, port: int
) -> None:
    recorder.reset()  # no filter: every TCP transition on the host is streamed
    before = Counter(recorder.probe.transition_counts())
    stats_before = recorder.probe.stream_stats()
    for offset, family in enumerate([AF_INET, AF_INET6, AF_INET, AF_INET6]):
        client_closes_first(hosts, family, port + 2000 + offset)
    recorder.wait_for(lambda events: sum(transition(e)[1] is State.CLOSED for e in events) >= 12)
    recorder.probe.drain()
    received_before_read = transition_counts(recorder.events())
    after = Counter(recorder.probe.transition_counts())
    recorder.probe.drain()
    received_after_read = transition_counts(recorder.events())
    stats_after = recorder.probe.stream_stats()

    counted = after - before
    assert stats_after.lost == stats_before.lost
    # The counters are read between two drains of the stream: on a quiet host the three agree
    # exactly; other TCP traffic during the read can only fall between the two drains.
    for key in set(counted) | set(received_after_read):
        assert received_before_read[key] <= counted[key] <= received_after_read[key], key
    assert sum(counted.values()) >= 4 * 12
    assert stats_after.sent - stats_before.sent == len(recorder.records)
