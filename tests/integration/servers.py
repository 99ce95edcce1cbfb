"""Real servers for the tests: a `synfin run` daemon and a Prometheus that scrapes it."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

SYNFIN = str(Path(sys.executable).parent / "synfin")


def bpf_programs() -> set[int]:
    """The ids of every BPF program loaded in the kernel."""
    listed = subprocess.run(
        ["bpftool", "--json", "prog", "list"], capture_output=True, text=True, check=True
    )
    return {prog["id"] for prog in json.loads(listed.stdout)}


def programs_released(before: set[int], timeout: float = 10.0) -> bool:
    """Every program loaded since ``before`` is gone. The kernel frees a closed program after
    a grace period (a tp_btf program after an RCU tasks-trace one, which can take a second on
    a loaded machine), so this waits for it."""
    deadline = time.monotonic() + timeout
    while not bpf_programs() <= before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def scrape_samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample a `synfin run` on ``port`` serves, by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def synfin_run(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`synfin run` on a free loopback port; yields (process, port) once it serves."""
    port = free_port()
    process = subprocess.Popen(
        [SYNFIN, "run", "--listen-address", f"127.0.0.1:{port}", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    assert "serving" in line, line + process.stderr.read()
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
        process.stderr.close()


class Prometheus:
    """Prometheus' HTTP API over one kept-alive connection: a query opens no new TCP
    connection, so the test's own queries are not among the connections synfin counts."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str) -> tuple[int, bytes]:
        """(status, body) of a GET; once more on a new connection if Prometheus closed the idle
        one (http.client reconnects after close())."""
        try:
            return self._get(path)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.connection.close()
            return self._get(path)

    def _get(self, path: str) -> tuple[int, bytes]:
        self.connection.request("GET", path)
        reply = self.connection.getresponse()
        return reply.status, reply.read()

    def _api(self, expr: str, at: float | None = None) -> dict[str, Any]:
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at else {})
        status, body = self.get(f"/api/v1/query?{urllib.parse.urlencode(params)}")
        reply = json.loads(body)
        assert status == 200 and reply["status"] == "success", reply
        return dict(reply["data"])

    def query(self, expr: str, at: float | None = None) -> float | None:
        """The single value of an instant query; None when it returns no series."""
        result = self._api(expr, at)["result"]
        if not result:
            return None
        assert len(result) == 1, f"{expr} returned {len(result)} series"
        return float(result[0]["value"][1])

    def series(self, expr: str) -> list[dict[str, object]]:
        return list(self._api(expr)["result"])

    def scraped_after(self, moment: float, timeout: float = 20.0) -> float:
        """When the first scrape that began after ``moment`` (epoch seconds) began, once
        Prometheus holds it: every counter it read was read after ``moment``."""
        deadline = time.monotonic() + timeout
        while True:
            at = self.query("max(timestamp(up))")
            if at is not None and at > moment:
                return at
            assert time.monotonic() < deadline, f"no scrape after {moment} in {timeout} s"
            time.sleep(0.2)

    def wait_for(self, expr: str, expected: float, timeout: float = 20.0) -> float | None:
        deadline = time.monotonic() + timeout
        while True:
            value = self.query(expr)
            if value == expected or time.monotonic() > deadline:
                return value
            time.sleep(0.5)


@contextmanager
def prometheus(
    tmp: Path, target: str, scheme: str = "http", rules: Path | None = None
) -> Iterator[Prometheus]:
    """Prometheus (Debian's package) on loopback, scraping ``target`` every second."""
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        + (f"rule_files: ['{rules}']\n" if rules else "")
        + "scrape_configs:\n"
        f"  - job_name: synfin\n    scheme: {scheme}\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Prometheus(port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if server.get("/-/ready")[0] == 200:
                    break
            except OSError:
                server.connection.close()
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.2)
        assert server.wait_for('up{job="synfin"}', 1.0) == 1.0, "Prometheus cannot scrape synfin"
        yield server
    finally:
        server.connection.close()
        process.terminate()
        process.wait(timeout=10)
