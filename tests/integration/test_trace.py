"""`synfin trace` against the real kernel: scenarios in namespaces, drawn and checked.

Each scenario runs between the test hosts while the real segment capture (in the client's
namespace) and the real state probe record; the ladder must match a golden text once the
random parts (initial sequence numbers, ephemeral ports, times, process ids) are normalised,
and the rule checks must give the expected verdicts.

SYNFIN_RECORD_FIXTURES=1 rewrites tests/fixtures/trace/ from these runs.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator

import pytest

from synfin.kernel.namespaces import NETNS_DIR
from synfin.kernel.segment_probe import CaptureOptions, SegmentCapture
from synfin.lab.hosts import HostPair
from synfin.lab.scenarios import SCENARIOS
from synfin.ladder.layout import Ladder
from synfin.ladder.rules import (
    FIN_RULE,
    HANDSHAKE_RULE,
    SYN_RULE,
    TEARDOWN_RULE,
    TIME_WAIT_RULE,
    Verdict,
)
from synfin.ladder.tracer import Tracer
from synfin.records.events import from_fields
from synfin.records.segments import SEGMENT_LAYOUT, segment_from_fields
from synfin.views.ladder_text import render
from tests.paths import FIXTURES
from tests.scenario_checks import connections_done, run_engine

from .conftest import Recorder

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

GOLDEN = FIXTURES / "trace"
H, D, N = Verdict.HOLDS, Verdict.DEVIATION, Verdict.NOT_SEEN
ALL_HOLD_BUT_2MSL = {
    HANDSHAKE_RULE: H, SYN_RULE: H, TEARDOWN_RULE: H, FIN_RULE: H, TIME_WAIT_RULE: N,
}  # fmt: skip
EXPECTED_VERDICTS = {
    "client-closes": ALL_HOLD_BUT_2MSL,
    "server-closes": ALL_HOLD_BUT_2MSL,
    "simultaneous-close": {**ALL_HOLD_BUT_2MSL, TEARDOWN_RULE: D},  # its FINs were resent
    "refused": {HANDSHAKE_RULE: D, SYN_RULE: N, TEARDOWN_RULE: D, FIN_RULE: N, TIME_WAIT_RULE: N},
    "reset-abort": {**ALL_HOLD_BUT_2MSL, TEARDOWN_RULE: D, FIN_RULE: N},
    "syn-retransmit": {**ALL_HOLD_BUT_2MSL, HANDSHAKE_RULE: D},
    "time-wait-killed": {**ALL_HOLD_BUT_2MSL, TIME_WAIT_RULE: D},
}
FAMILY_IDS = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}
CASES = [
    pytest.param(name, family, id=f"{name}-{FAMILY_IDS[family]}")
    for name in EXPECTED_VERDICTS
    for family in SCENARIOS[name].families
]


class Capture:
    def __init__(self, capture: SegmentCapture) -> None:
        self.capture = capture
        self.records: list[tuple[object, ...]] = []
        capture.open_stream(self.records.extend, SEGMENT_LAYOUT)

    def reset(self, port: int, family: int) -> None:
        self.capture.set_filter((port,), family)
        self.capture.drain()
        self.records.clear()


@pytest.fixture(scope="module")
def client_capture(hosts: HostPair) -> Iterator[Capture]:
    options = CaptureOptions(netns=NETNS_DIR / hosts.client.namespace)
    with SegmentCapture(options) as capture:
        yield Capture(capture)


def trace(
    recorder: Recorder, capture: Capture, hosts: HostPair, name: str, family: int, port: int
) -> list[Ladder]:
    recorder.reset((port,), family)
    capture.reset(port, family)
    scenario = SCENARIOS[name]
    scenario.run(hosts, family, port)
    # Until the engine has both ends' whole documented paths (a TIME-WAIT kill is confirmed
    # only at the next timer event on its CPU), then a moment for the segments.
    recorder.wait_for(lambda events: connections_done(run_engine(events), scenario))
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        capture.capture.poll(20)
    ladders: list[Ladder] = []
    tracer = Tracer(draw=ladders.append, wait_for_time_wait=False)
    for record in recorder.records:
        tracer.on_event(from_fields(record))
    for record in capture.records:
        tracer.on_segment(segment_from_fields(record))
    tracer.finish()
    assert capture.capture.stats().lost == 0
    return ladders


def normalised(text: str, hosts: HostPair, port: int) -> str:
    """The ladder with what differs from run to run replaced by fixed words.

    Whether the peer's FIN moving FIN-WAIT-2 on to TIME-WAIT is observed or inferred depends on
    kernel timing (tests/integration/test_scenarios.py pins when each may be inferred), so its
    mark goes (its column keeps its width).
    """
    for host in (hosts.client, hosts.server):
        for address in (host.ipv4, host.ipv6):
            text = text.replace(f"[{address}]", address)
    text = re.sub(rf":{port}\b", ":PORT", text)
    text = re.sub(r"(192\.0\.2\.1|2001:db8::1):\d+", r"\1:CPORT", text)
    text = re.sub(r"process \d+/\S+", "process PID", text)
    text = re.sub(r"^ *\+\d+\.\d{3} m?s", lambda _m: f"{'+T':>11}", text, flags=re.M)
    text = re.sub(r"\b\d+(\.\d+)?(ns|us|ms|s)\b", "DURATION", text)
    text = re.sub(r"\d{5,}", "N", text)
    text = text.replace("TIME-WAIT~", "TIME-WAIT ")
    text = re.sub(r"\n  ~ inferred by synfin from other kernel events(; )?", "\n  ", text)
    text = text.replace("\n  \n", "\n")
    text = re.sub(r" +$", "", text, flags=re.M)
    # Real numbers are centred under each arrow: their width varies with the numbers.
    return re.sub(r"│ +(seq=\w+(?: ack=\w+)?) +│", r"│ \1 │", text)


@pytest.mark.parametrize(("name", "family"), CASES)
def test_scenario_ladder(
    recorder: Recorder,
    client_capture: Capture,
    hosts: HostPair,
    port: int,
    name: str,
    family: int,
) -> None:
    ladders = trace(recorder, client_capture, hosts, name, family, port)
    assert len(ladders) == 1, [render(ladder) for ladder in ladders]
    ladder = ladders[0]
    text = render(ladder)
    verdicts = {check.rule: check.verdict for check in ladder.checks}
    assert verdicts == EXPECTED_VERDICTS[name], text

    golden = GOLDEN / f"{name}-{FAMILY_IDS[family]}.txt"
    actual = normalised(text, hosts, port)
    if os.environ.get("SYNFIN_RECORD_FIXTURES"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual)
    assert actual == golden.read_text(), text


def test_every_segment_of_a_connection_when_asked(hosts: HostPair, port: int) -> None:
    """--all-segments: the data segments are captured too, not only SYN, FIN, RST and ACKs."""
    options = CaptureOptions(netns=NETNS_DIR / hosts.client.namespace, all_segments=True)
    with SegmentCapture(options) as capture:
        records: list[tuple[object, ...]] = []
        capture.set_filter((port,))
        capture.open_stream(records.extend, SEGMENT_LAYOUT)
        SCENARIOS["client-closes"].run(hosts, socket.AF_INET, port)
        capture.poll(100)
        capture.drain()
    payloads = [segment_from_fields(r).payload_len for r in records]
    request, response = len(b"GET / HTTP/1.0\r\n\r\n"), len(b"HTTP/1.0 200 OK\r\n\r\n")
    assert request in payloads and response in payloads
