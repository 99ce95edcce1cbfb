"""`synfin trace` through its real command line: JSON against the schema in the repo, the SVG
rendered to PNG by a real renderer, and the textbook's connection beside one curl, with
every rule holding, 2MSL included."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from synfin.lab.hosts import HostPair
from synfin.lab.plays import pair
from synfin.lab.scenarios import SCENARIOS
from tests.paths import REPO

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

SYNFIN = str(Path(sys.executable).parent / "synfin")
SCHEMA = json.loads((REPO / "schemas" / "trace.schema.json").read_text())


@contextmanager
def tracing(*args: str) -> Iterator[subprocess.Popen[str]]:
    """`synfin trace ARGS` running, with its probes attached, for the block."""
    process = subprocess.Popen(
        [SYNFIN, "trace", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    try:
        line = process.stderr.readline()
        assert "capturing" in line, line + process.stderr.read()
        yield process
    finally:
        if process.poll() is None:
            process.terminate()


def finish(process: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out, err


def test_json_validates_against_the_schema(hosts: HostPair, port: int) -> None:
    args = ["--netns", hosts.client.namespace, "--port", str(port), "--format", "json"]
    with tracing(*args, "--time-wait", "skip", "--count", "2") as process:
        SCENARIOS["client-closes"].run(hosts, socket.AF_INET, port)
        SCENARIOS["reset-abort"].run(hosts, socket.AF_INET6, port)
        out, err = finish(process, 30)
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2, err
    for record in records:
        jsonschema.validate(record, SCHEMA)
    normal, reset = records
    assert {c["verdict"] for c in normal["checks"][:4]} == {"holds"}
    assert [s["flags"] for s in normal["segments"]][:3] == ["SYN", "SYN+ACK", "ACK"]
    assert normal["segments"][1]["ack"] == normal["symbols"]["x"] + 1
    assert reset["family"] == "ipv6"
    assert any(s["flags"].startswith("RST") for s in reset["segments"])
    assert "2 connection(s) drawn" in err and ", 0 lost" in err


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="needs rsvg-convert")
def test_svg_renders_to_a_real_picture(hosts: HostPair, port: int, tmp_path: Path) -> None:
    svg, png = tmp_path / "ladder.svg", tmp_path / "ladder.png"
    args = ["--netns", hosts.client.namespace, "--port", str(port), "--format", "svg"]
    with tracing(*args, "-o", str(svg), "--time-wait", "skip", "--count", "1") as process:
        SCENARIOS["client-closes"].run(hosts, socket.AF_INET, port)
        finish(process, 30)
    subprocess.run(["rsvg-convert", "-o", str(png), str(svg)], check=True)
    with Image.open(png) as image:
        width, height = image.size
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 16) or []
    assert width == 900 and height > 600
    inked = sum(count for count, rgb in colours if rgb != (255, 255, 255))
    # Text, two lines and seven arrows: a few percent of the picture, in several colours.
    assert inked > 0.02 * width * height
    assert len([c for c in colours if c[0] > 200]) >= 5


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "index.html").write_text("<p>hello</p>\n")
    handler = lambda *a: QuietHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_one_curl_draws_the_textbook_connection_with_every_rule_holding(web_server: int) -> None:
    """The README's example: waits out TIME-WAIT (2MSL, 60 s on Linux) to check it too."""
    with tracing("--count", "1", "--port", str(web_server)) as process:
        subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:{web_server}/"], check=True
        )
        out, _err = finish(process, 90)
    assert "SYN seq=x" in out and "SYN+ACK seq=y ack=x+1" in out and "ACK seq=x+1 ack=y+1" in out
    assert "TIME-WAIT" in out and "LISTEN" in out and "ESTABLISHED" in out
    checks = [line.strip() for line in out.split("  checks:\n", 1)[1].splitlines() if line]
    assert len(checks) == 5 and all(line.startswith("✓") for line in checks), out
    assert "in TIME-WAIT (2MSL = 60 s on Linux)" in out


def test_timeout_draws_an_open_connection_as_far_as_it_got_in_ascii(
    hosts: HostPair, port: int
) -> None:
    args = ["--netns", hosts.client.namespace, "--port", str(port), "--host", "192.0.2.0/24"]
    listener = client = accepted = None
    try:
        with tracing(*args, "--timeout", "2", "--ascii") as process:
            listener, client, accepted = pair(hosts, socket.AF_INET, port)
            out, err = finish(process, 30)
    finally:
        for sock in (accepted, client, listener):
            if sock is not None:
                sock.close()
    assert out.isascii(), out
    assert "|--- SYN seq=x ---" in out and "ESTABLISHED" in out
    assert "(trace stopped here; the connection went on)" in out
    assert "? four-way teardown: stopped before the teardown ended" in out
    assert "1 connection(s) drawn" in err
