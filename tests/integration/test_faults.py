"""Faults: a ring buffer too small counts every record it drops, and slow or many scrapers
do not stall synfin."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest

from synfin.kernel.state_probe import ProbeOptions, TcpProbe
from synfin.lab.hosts import HostPair
from synfin.lab.plays import kill_timewait
from synfin.lab.storms import STORMS
from synfin.records.connections import CONNECTION_LAYOUT, connection_from_fields
from synfin.records.events import EventKind

from .conftest import Recorder
from .servers import synfin_run

pytestmark = pytest.mark.bpf


@pytest.mark.netns
def test_a_full_ring_buffer_counts_exactly_what_it_drops(hosts: HostPair) -> None:
    """Two probes see the same connections: one with a 1-page buffer that overflows, one large
    enough for all. sent + lost of the small one equals everything the large one delivered."""
    port, count = 38000, 100
    with (
        TcpProbe(ProbeOptions(ringbuf_pages=1)) as tiny,
        TcpProbe(ProbeOptions(ringbuf_pages=1024)) as big,
    ):
        tiny_records, big_records = Recorder(tiny), Recorder(big)
        for recorder in (tiny_records, big_records):
            recorder.reset(ports=(port,))
        tiny_before, big_before = tiny.stream_stats(), big.stream_stats()
        STORMS["time-wait-storm"].run(hosts, socket.AF_INET, port, count)  # nobody polls meanwhile
        time.sleep(0.2)
        tiny.drain()
        big.drain()
        tiny_after, big_after = tiny.stream_stats(), big.stream_stats()
    produced = len(big_records.records)
    sent, lost = tiny_after.sent - tiny_before.sent, tiny_after.lost - tiny_before.lost
    assert big_after.lost == big_before.lost  # the large buffer dropped nothing
    assert big_after.sent - big_before.sent == produced
    assert sum(e.kind == EventKind.SOCKET_END for e in big_records.events()) == 2 * count + 1
    assert lost > 0
    assert sent == len(tiny_records.records)  # every record sent was delivered
    assert sent + lost == produced  # and every one not sent was counted


class ConnectionRecorder:
    def __init__(self, probe: TcpProbe) -> None:
        self.probe, self.records = probe, []
        probe.open_stream(self.records.extend, CONNECTION_LAYOUT)


@pytest.mark.netns
def test_a_full_ring_buffer_counts_every_connection_record_it_drops(hosts: HostPair) -> None:
    """The same with --per-connection: records of many socket ends, sent at once when their
    TIME-WAIT is killed, overflow a 1-page buffer; sent + lost is what a large one delivered."""
    port, count = 38001, 100
    options = {"per_connection": True}
    with (
        TcpProbe(ProbeOptions(ringbuf_pages=1, **options)) as tiny,
        TcpProbe(ProbeOptions(ringbuf_pages=1024, **options)) as big,
    ):
        tiny_records, big_records = ConnectionRecorder(tiny), ConnectionRecorder(big)
        for probe in (tiny, big):
            probe.set_filter((port,))
        tiny_before, big_before = tiny.stream_stats(), big.stream_stats()
        STORMS["time-wait-storm"].run(hosts, socket.AF_INET, port, count)  # nobody polls meanwhile
        kill_timewait(hosts.client.namespace, port, count)
        time.sleep(0.2)
        tiny.drain()
        big.drain()
        tiny_after, big_after = tiny.stream_stats(), big.stream_stats()
    produced = len(big_records.records)
    ends = [connection_from_fields(fields) for fields in big_records.records]
    sent, lost = tiny_after.sent - tiny_before.sent, tiny_after.lost - tiny_before.lost
    assert big_after.lost == big_before.lost
    assert big_after.sent - big_before.sent == produced
    # Both ends of every connection, and the listener: the client's through its TIME-WAIT.
    assert len(ends) == 2 * count + 1
    assert sum(1 for end in ends if end.timewait) == count
    assert lost > 0
    assert sent == len(tiny_records.records)
    assert sent + lost == produced


def scrape(port: int, timeout: float = 10.0) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as reply:
        reply.read()
        return int(reply.status)


def connects(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("synfin_tcp_connects_total{")
    )


def test_stalled_and_concurrent_scrapers_do_not_stall_synfin() -> None:
    with synfin_run("--ground-truth=host") as (_daemon, port):
        stalled = socket.create_connection(("127.0.0.1", port))  # connects, never sends or reads
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # a request never finished
        try:
            before = connects(port)
            results: list[int] = []
            threads = [
                threading.Thread(target=lambda: results.append(scrape(port))) for _ in range(100)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert results == [200] * 100
            # Counting goes on in the kernel meanwhile: the scrapes themselves were connects.
            assert connects(port) >= before + 100
        finally:
            stalled.close()
            half.close()
        assert scrape(port) == 200  # and it still serves once they are gone


def test_prometheus_going_away_changes_nothing(tmp_path: object) -> None:
    """synfin is scraped, never pushes: a scraper that stops (or dies mid-request) leaves it
    serving and counting."""
    with synfin_run("--ground-truth=host") as (daemon, port):
        for _ in range(3):
            assert scrape(port) == 200
        dying = socket.create_connection(("127.0.0.1", port))
        dying.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        dying.close()  # gone before reading the answer
        time.sleep(1)
        before = connects(port)
        assert daemon.poll() is None
        assert connects(port) >= before + 1  # the last scrape itself was counted
