"""TIME-WAIT and its end, as `synfin watch` shows them for an active close.

The kernel holds TIME-WAIT for TCP_TIMEWAIT_LEN (60 s, compiled in), so this test takes a
minute: it runs a real client-closes connection between two namespaces under a real
`synfin watch --json` and waits for the timewait socket's timer to expire.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from synfin.lab.hosts import HostPair
from synfin.lab.plays import client_closes

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

SYNFIN = str(Path(sys.executable).parent / "synfin")


def test_watch_shows_time_wait_and_its_2msl_end(hosts: HostPair) -> None:
    port = 33000
    process = subprocess.Popen(
        [SYNFIN, "watch", "--json", "--port", str(port), "--duration", "68"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    assert "tracing" in process.stderr.readline()
    client_closes(hosts, socket.AF_INET, port)
    stdout, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr

    records = [json.loads(line) for line in stdout.splitlines()]
    finished = [
        r for r in records if r["type"] == "finished" and r["classification"]["open"] == "active"
    ]
    assert len(finished) == 1
    client = finished[0]
    assert client["path"] == [
        "CLOSED", "SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSED",
    ]  # fmt: skip
    end = client["steps"][-1]
    assert end["observed"] is True and end["how"] == "2MSL expired"
    on_screen = [
        r
        for r in records
        if r["type"] == "step" and r["to"] == "CLOSED" and r["from"] == "TIME-WAIT"
    ]
    assert len(on_screen) == 1  # and the live view showed the end as it happened
    # 2MSL as Linux counts it: 60 s from the peer's FIN, plus the timer wheel's slack.
    assert 59.0 <= end["time_in_from_s"] <= 66.0
