"""Arbitrary bytes at a running `synfin run`, over real sockets: malformed request lines, huge
headers, invalid UTF-8 in paths and headers, clients that send half a request and stop, many at
once, and junk at its TLS port. Each gets an answer or a closed connection, promptly; after
them all the server still answers a normal scrape, with every probe attached, and has written
no traceback."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synfin.exporter.web import REQUEST_TIMEOUT

from .servers import SYNFIN, free_port

pytestmark = pytest.mark.bpf

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
GOOD = "Basic " + base64.b64encode(b"prometheus:s3cret").decode()


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    port: int
    stderr: Path
    tls: bool
    hooks: list[str] = field(default_factory=list)  # synfin_probe_attached lines at start

    def attached(self) -> list[str]:
        status, body = self.scrape()
        assert status == 200
        return [line for line in body.splitlines() if line.startswith("synfin_probe_attached{")]

    def connect(self) -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=REQUEST_TIMEOUT + 5)
        if not self.tls:
            return raw
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context.wrap_socket(raw)

    def scrape(self) -> tuple[int, str]:
        with self.connect() as conn:
            conn.sendall(
                f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {GOOD}\r\n\r\n".encode()
            )
            reply = read_all(conn)
        head, _, body = reply.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()

    def assert_healthy(self) -> None:
        """Serving, every probe attached, and no traceback or error line on stderr."""
        assert self.process.poll() is None
        assert self.attached() == self.hooks
        assert self.hooks and all(line.endswith(" 1.0") for line in self.hooks)
        log = self.stderr.read_text(errors="replace")
        assert "Traceback" not in log and "error" not in log, log


def read_all(conn: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError, ssl.SSLError):
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def running(tmp: Path, *, tls: bool) -> Iterator[Daemon]:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    config = f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    config += "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    if tls:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "1", "-subj", "/CN=synfin", "-keyout", str(tmp / "tls.key"),
             "-out", str(tmp / "tls.crt")],
            capture_output=True, check=True,
        )  # fmt: skip
        config += "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
    (tmp / "web.yml").write_text(config)
    port, stderr = free_port(), tmp / "stderr.log"
    with stderr.open("wb") as log:
        process = subprocess.Popen(
            [SYNFIN, "run", f"--listen-address=127.0.0.1:{port}", "--ground-truth=off",
             f"--web-config-file={tmp / 'web.yml'}"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "serving" not in stderr.read_text(errors="replace"):
            assert process.poll() is None and time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.05)
        stderr.write_text("")  # from here on, anything written is a complaint
        daemon = Daemon(process, port, stderr, tls)
        daemon.hooks = daemon.attached()
        yield daemon
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(tmp_path_factory.mktemp("plain"), tls=False) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(tmp_path_factory.mktemp("tls"), tls=True) as daemon:
        yield daemon


def exchange(daemon: Daemon, data: bytes) -> bytes:
    """Send the bytes, say that is all, and read to the end: the server must close promptly."""
    started = time.monotonic()
    with daemon.connect() as conn:
        with contextlib.suppress(OSError):  # the server may answer and close before the end
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        reply = read_all(conn)
    assert time.monotonic() - started < 5, "the server held a finished request"
    return reply


def assert_answered(reply: bytes) -> None:
    """An HTTP answer that is not a server error, or a closed connection. (A two-word request
    line is HTTP/0.9, which is answered with the body alone.)"""
    if reply.startswith(b"HTTP/1."):
        status = reply.split(b"\r\n", 1)[0]
        assert status.split()[1] != b"500", reply[:300]


TOKEN = st.binary(min_size=1, max_size=12)
LINE_END = st.sampled_from([b"\r\n", b"\n"])
HEADER_NAMES = st.sampled_from(
    [b"Host", b"Authorization", b"Accept", b"Accept-Encoding", b"Content-Length",
     b"Transfer-Encoding", b"Connection", b"Expect", b"X-\xff\xfe"]
) | TOKEN  # fmt: skip
HEADER_VALUES = (
    st.sampled_from(
        [GOOD.encode(), b"Basic \xff\xfe", b"Basic " + base64.b64encode(b"\xff:\xfe"),
         b"text/plain; version=a", b"application/openmetrics-text; version=1.0.0",
         b"application/openmetrics-text; version=2.0.0.\r\n x", b"gzip", b"-1", b"chunked",
         b"Basic " + base64.b64encode(b"prometheus:" + b"x" * 100)]
    )
    | st.binary(max_size=200)
)  # fmt: skip


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS", b"PRI"]) | TOKEN)
    path = draw(
        st.sampled_from([b"/metrics", b"/", b"/metrics?name[]=%ff", b"*", b"http://x/metrics"])
        | st.binary(max_size=300)
    )
    version = draw(
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b""]) | TOKEN
    )
    end = draw(LINE_END)
    lines = [b" ".join(part for part in (method, path, version) if part)]
    auth = draw(st.sampled_from([[b"Authorization: " + GOOD.encode()], []]))
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6))
    lines += auth + [name + b": " + value for name, value in headers]
    finished = draw(st.booleans())  # without the blank line the request never ends
    return end.join(lines) + end + (end if finished else b"") + draw(st.binary(max_size=100))


@FUZZ
@given(data=st.binary(max_size=3000) | requests())
def test_any_bytes_to_the_http_port(plain: Daemon, data: bytes) -> None:
    assert_answered(exchange(plain, data))


@settings(FUZZ, max_examples=60)
@given(data=st.binary(max_size=3000) | requests())
def test_any_bytes_inside_tls(tls: Daemon, data: bytes) -> None:
    assert_answered(exchange(tls, data))


@settings(FUZZ, max_examples=60)
@given(data=st.binary(max_size=3000))
def test_any_bytes_to_the_tls_port_in_the_clear(tls: Daemon, data: bytes) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", tls.port), timeout=15) as conn:
        with contextlib.suppress(OSError):
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        read_all(conn)  # a TLS alert or nothing: no HTTP is spoken before the handshake
    assert time.monotonic() - started < 5


def test_the_edges_get_their_answers(plain: Daemon) -> None:
    auth = f"Authorization: {GOOD}\r\n".encode()
    cases = {
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n": b" 414 ",
        b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n": b" 431 ",
        b"GET /metrics HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 150 + b"\r\n": b" 431 ",
        b"GET /\xff\xfe%ff HTTP/1.1\r\n" + auth + b"\r\n": b" 404 ",
        b"GET /metrics HTTP/1.1\r\n" + auth + b"X-\xff: \xfe\r\n\r\n": b" 200 ",
        b"GET /metrics HTTP/1.1\r\nAuthorization: Basic \xff\xfe\r\n\r\n": b" 401 ",
        b"GET /metrics HTTP/1.1\r\nAccept: text/plain; version=a\r\n" + auth + b"\r\n": b" 200 ",
        b"GET /metrics HTTP/9.9\r\n\r\n": b" 505 ",
        b"\xff\xfe\r\n\r\n": b" 400 ",
    }
    for request, status in cases.items():
        reply = exchange(plain, request)
        assert status in reply.split(b"\r\n", 1)[0], (request[:60], reply[:200])
    plain.assert_healthy()


def test_half_requests_and_many_at_once(plain: Daemon) -> None:
    """Clients that send half a request and stop are dropped after the timeout; while they
    wait, and while 300 others send junk at once, a scrape is answered at once."""
    half = [plain.connect() for _ in range(50)]
    for conn in half:
        conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    results: list[bytes] = []

    def junk(n: int) -> None:
        results.append(exchange(plain, b"GET /%d HTTP/1.1\r\n\xff\xfe: x\r\n\r\n" % n))

    threads = [threading.Thread(target=junk, args=(n,)) for n in range(300)]
    for thread in threads:
        thread.start()
    scrape_started = time.monotonic()
    assert plain.scrape()[0] == 200
    assert time.monotonic() - scrape_started < 5
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 300 and all(reply.startswith(b"HTTP/1.0 401") for reply in results)
    for conn in half:
        with conn:
            assert read_all(conn) == b""  # closed by the server, with nothing said
    assert time.monotonic() - started < REQUEST_TIMEOUT + 5
    plain.assert_healthy()


def test_still_serving_after_the_fuzzing(plain: Daemon, tls: Daemon) -> None:
    plain.assert_healthy()
    tls.assert_healthy()
