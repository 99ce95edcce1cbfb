"""The ladder from recorded segments alone (no kernel states): roles and textbook labels,
the rules, the states of an end that is not on this host, sequence-number wrap-around, and
the trace filters. The live kernel side is in tests/integration/test_trace.py."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from synfin.engine.connection import Connection, Step, StepTaken
from synfin.engine.states import State
from synfin.ladder.dialogue import End, Tracker
from synfin.ladder.layout import FROM_SEGMENTS, build
from synfin.ladder.peer_states import Inferred, infer
from synfin.ladder.roles import Part, Role
from synfin.ladder.rules import Verdict
from synfin.ladder.tracer import TraceFilter
from synfin.records.addresses import pack_address
from synfin.records.segments import Flag, Segment, decode_segment, encode_segment

CLIENT, SERVER = pack_address("198.51.100.7")[1], pack_address("203.0.113.9")[1]
S, A, F, R = Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST


def segment(ts: int, from_client: bool, flags: Flag, seq: int, ack: int = 0) -> Segment:
    ends = [(CLIENT, 40000), (SERVER, 443)]
    (saddr, sport), (daddr, dport) = ends if from_client else ends[::-1]
    return Segment(ts * 1000, 2, saddr, sport, daddr, dport, seq & 0xFFFFFFFF,
                   ack & 0xFFFFFFFF, flags)  # fmt: skip


def four_way(x: int, y: int) -> list[Segment]:
    """The seed documents' connection: handshake, 10 bytes each way, the client closes."""
    u, w = x + 11, y + 11
    return [
        segment(0, True, S, x),
        segment(10, False, S | A, y, x + 1),
        segment(20, True, A, x + 1, y + 1),
        segment(1000, True, F | A, u, w),
        segment(1010, False, A, w, u + 1),
        segment(2000, False, F | A, w, u + 1),
        segment(2010, True, A, u + 1, w + 1),
    ]


def ladder_of(segments: list[Segment]):
    tracker = Tracker(wait_for_time_wait=False)
    for seg in segments:
        tracker.on_segment(seg)
    (dialogue,) = tracker.take_all()
    return build(dialogue)


def test_parts_labels_and_rules_of_the_textbook_connection() -> None:
    ladder = ladder_of(four_way(1000, 5000))
    assert [p.role for p in ladder.parts] == [
        Role.SYN, Role.SYN_ACK, Role.HANDSHAKE_ACK, Role.FIRST_FIN, Role.FIRST_FIN_ACK,
        Role.SECOND_FIN, Role.SECOND_FIN_ACK,
    ]  # fmt: skip
    assert [p.label for p in ladder.parts] == [
        "seq=x", "seq=y ack=x+1", "seq=x+1 ack=y+1", "seq=u", "seq=v ack=u+1",
        "seq=w ack=u+1", "seq=u+1 ack=w+1",
    ]  # fmt: skip
    verdicts = [check.verdict for check in ladder.checks]
    assert verdicts == [Verdict.HOLDS] * 4 + [Verdict.NOT_SEEN]  # no kernel: 2MSL unseen
    assert "four segments (client first)" in ladder.checks[2].detail


def test_states_of_ends_not_on_this_host_follow_the_textbook() -> None:
    ladder = ladder_of(four_way(1000, 5000))
    paths: list[list[State]] = [[], []]
    for row in ladder.rows:
        for column, marks in enumerate(row.marks):
            paths[column] += [mark.state for mark in marks]
            assert all(mark.evidence == FROM_SEGMENTS for mark in marks)
    assert [m.state for m in ladder.initial if m] == [State.CLOSED, State.LISTEN]
    assert paths[0] == [State.SYN_SENT, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2,
                        State.TIME_WAIT]  # fmt: skip
    assert paths[1] == [State.SYN_RCVD, State.ESTABLISHED, State.CLOSE_WAIT, State.LAST_ACK,
                        State.CLOSED]  # fmt: skip


def test_sequence_numbers_wrap_around_and_the_rules_still_hold() -> None:
    ladder = ladder_of(four_way(0xFFFFFFFF, 0xFFFFFFF8))
    assert [c.verdict for c in ladder.checks][:4] == [Verdict.HOLDS] * 4
    assert "ack=0 = 4294967295 + 1" in ladder.checks[1].detail


def test_a_wrong_acknowledgement_is_named() -> None:
    segments = four_way(1000, 5000)
    segments[1] = segment(10, False, S | A, 5000, 1002)  # acks x+2: not what the rule says
    ladder = ladder_of(segments)
    syn_check = ladder.checks[1]
    assert syn_check.verdict is Verdict.DEVIATION
    assert "the SYN+ACK acknowledged 1002, not x+1 = 1001" in syn_check.detail


def test_refused_and_retransmitted_syn_are_named() -> None:
    refused = ladder_of([segment(0, True, S, 7), segment(5, False, R | A, 0, 8)])
    assert refused.checks[0].detail == "refused: the server answered with RST"
    retried = four_way(1000, 5000)
    retried.insert(1, segment(5, True, S, 1000))
    ladder = ladder_of(retried)
    assert ladder.parts[1].role is Role.RETRANSMISSION and ladder.parts[1].label == "seq=x"
    assert ladder.checks[0].verdict is Verdict.DEVIATION
    assert ladder.checks[0].detail.startswith("SYN sent 2 times")


def test_segment_records_round_trip() -> None:
    seg = segment(123, False, F | A, 0xFFFFFFFE, 17)
    assert decode_segment(encode_segment(seg)) == seg


def test_trace_filter_by_network_and_process() -> None:
    tracker = Tracker()
    for seg in four_way(1, 2):
        tracker.on_segment(seg)
    (dialogue,) = tracker.take_all()
    assert TraceFilter((ipaddress.ip_network("203.0.113.0/24"),)).admits(dialogue)
    assert not TraceFilter((ipaddress.ip_network("10.0.0.0/8"),)).admits(dialogue)
    assert not TraceFilter(pid=1).admits(dialogue)  # no local socket: no process to match


def test_connections_that_never_end_are_forgotten_at_the_limit(monkeypatch) -> None:
    monkeypatch.setattr("synfin.ladder.dialogue.MAX_DIALOGUES", 2)
    tracker = Tracker()
    for port in (1, 2, 3):
        tracker.on_segment(Segment(port, 2, CLIENT, port, SERVER, 443, 7, 0, S))
    assert tracker.forgotten == 1
    assert sorted(d.initiator.port for d in tracker.take_all()) == [2, 3]


# Every rule the ladder used before its rule book became the engine's state table, by the
# ladder's own names for the segments (True: the second FIN also acknowledges the first).
RULES_BEFORE_THE_TABLE = [
    (State.CLOSED, "sent", Role.SYN, False, State.SYN_SENT),
    (State.LISTEN, "received", Role.SYN, False, State.SYN_RCVD),
    (State.SYN_SENT, "received", Role.SYN_ACK, False, State.ESTABLISHED),
    (State.SYN_RCVD, "received", Role.HANDSHAKE_ACK, False, State.ESTABLISHED),
    (State.ESTABLISHED, "sent", Role.FIRST_FIN, False, State.FIN_WAIT_1),
    (State.ESTABLISHED, "received", Role.FIRST_FIN, False, State.CLOSE_WAIT),
    (State.ESTABLISHED, "sent", Role.SECOND_FIN, False, State.FIN_WAIT_1),  # the FINs crossed
    (State.FIN_WAIT_1, "received", Role.FIRST_FIN, False, State.CLOSING),
    (State.FIN_WAIT_1, "received", Role.FIRST_FIN_ACK, False, State.FIN_WAIT_2),
    (State.FIN_WAIT_1, "received", Role.SECOND_FIN, False, State.CLOSING),
    (State.FIN_WAIT_1, "received", Role.SECOND_FIN, True, State.TIME_WAIT),
    (State.FIN_WAIT_2, "received", Role.SECOND_FIN, False, State.TIME_WAIT),
    (State.FIN_WAIT_2, "received", Role.SECOND_FIN, True, State.TIME_WAIT),
    (State.CLOSE_WAIT, "sent", Role.SECOND_FIN, False, State.LAST_ACK),
    (State.CLOSE_WAIT, "sent", Role.SECOND_FIN, True, State.LAST_ACK),
    (State.CLOSING, "received", Role.FIRST_FIN_ACK, False, State.TIME_WAIT),
    (State.CLOSING, "received", Role.SECOND_FIN_ACK, False, State.TIME_WAIT),
    (State.LAST_ACK, "received", Role.SECOND_FIN_ACK, False, State.CLOSED),
]


@pytest.mark.parametrize(
    ("source", "direction", "role", "acks_first", "target"), RULES_BEFORE_THE_TABLE
)
def test_the_rules_before_the_table_still_hold(
    source: State, direction: str, role: Role, acks_first: bool, target: State
) -> None:
    seg = segment(0, True, F | A, 1)
    part = Part(seg, role, "", End(2, CLIENT, 40000))
    end = part.sender if direction == "sent" else End(2, SERVER, 443)
    assert infer([part], end, source, acks_first) == [Inferred(0, source, target)]


def remote_paths(segments: list[Segment]) -> list[list[State]]:
    paths: list[list[State]] = [[], []]
    for row in ladder_of(segments).rows:
        for column, marks in enumerate(row.marks):
            paths[column] += [mark.state for mark in marks]
    return paths


def test_a_simultaneous_close_goes_through_closing() -> None:
    x, y = 1000, 5000
    u, w = x + 1, y + 1
    client, server = remote_paths([
        segment(0, True, S, x),
        segment(10, False, S | A, y, x + 1),
        segment(20, True, A, x + 1, y + 1),
        segment(1000, True, F | A, u, w),  # the FINs cross: neither acknowledges the other
        segment(1001, False, F | A, w, u),
        segment(1010, True, A, u + 1, w + 1),
        segment(1011, False, A, w + 1, u + 1),
    ])  # fmt: skip
    assert client == [State.SYN_SENT, State.ESTABLISHED, State.FIN_WAIT_1, State.CLOSING,
                      State.TIME_WAIT]  # fmt: skip
    # Seen from the wire, the server got the client's FIN first: the passive close.
    assert server == [State.SYN_RCVD, State.ESTABLISHED, State.CLOSE_WAIT, State.LAST_ACK,
                      State.CLOSED]  # fmt: skip


def test_a_fin_carrying_the_ack_of_the_first_takes_fin_wait_1_to_time_wait() -> None:
    segments = four_way(1000, 5000)
    del segments[4]  # the server's ACK of the first FIN rides on its own FIN
    client, server = remote_paths(segments)
    assert client == [State.SYN_SENT, State.ESTABLISHED, State.FIN_WAIT_1, State.TIME_WAIT]
    assert server == [State.SYN_RCVD, State.ESTABLISHED, State.CLOSE_WAIT, State.LAST_ACK,
                      State.CLOSED]  # fmt: skip


def test_a_reset_closes_both_ends() -> None:
    segments = [*four_way(1000, 5000)[:3], segment(500, False, R | A, 5001, 1001)]
    client, server = remote_paths(segments)
    assert client == [State.SYN_SENT, State.ESTABLISHED, State.CLOSED]
    assert server == [State.SYN_RCVD, State.ESTABLISHED, State.CLOSED]


def test_a_socket_whose_ladder_was_handed_over_does_not_wait_for_segments() -> None:
    """With ladders drawn at the last ACK, the client's TIME-WAIT ends a minute later: that
    step has no segment to come and must not be held (a long run would fill the table)."""
    client = Connection(
        skaddr=0xAB, family=2, netns=1, start_ns=0, state=State.CLOSED, state_ns=None,
        sport=40000, dport=443, saddr=CLIENT, daddr=SERVER,
    )  # fmt: skip
    tracker = Tracker(wait_for_time_wait=False)
    opening = client.take(Step(State.CLOSED, State.SYN_SENT, 0, None, observed=True))
    tracker.on_output(StepTaken(client, opening, None))  # type: ignore[arg-type]
    assert len(tracker.waiting) == 1  # ahead of its SYN
    for seg in four_way(1000, 5000):
        tracker.on_segment(seg)
    assert tracker.waiting == {}
    path = (State.SYN_SENT, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.TIME_WAIT)
    for at, (source, target) in enumerate(itertools.pairwise(path)):
        step = client.take(Step(source, target, at, None, observed=True))
        tracker.on_output(StepTaken(client, step, None))  # type: ignore[arg-type]
    (dialogue,) = tracker.take_over(now_ns=10**12, settle_ns=0)
    assert dialogue.initiator.kernel is not None
    ended = client.take(Step(State.TIME_WAIT, State.CLOSED, 60 * 10**9, None, observed=True))
    tracker.on_output(StepTaken(client, ended, None))  # type: ignore[arg-type]
    assert tracker.waiting == {}
