"""Serving /metrics (or the web view's pages) over HTTP or HTTPS as the web config says
(web_config.py reads it, web_tls.py builds the TLS context): basic auth, a rate limit, the
configured headers on every answer. Every request is untrusted bytes: whatever arrives gets an
HTTP answer or a closed connection, never a traceback, and a client that stops half-way is
dropped after a timeout.

One module, just over 300 lines: the middlewares, the server and the order build_app stacks
them in are one design, read together.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bcrypt

from synfin.errors import SynfinError
from synfin.exporter import web_tls
from synfin.exporter.web_config import RateLimit, WebConfig, load_web_config
from synfin.exporter.web_tls import WebConfigError
from synfin.exporter.yaml_file import one_line

__all__ = [
    "WSGIServer", "WebConfig", "WebConfigError", "load_web_config", "parse_listen_address", "serve",
]  # fmt: skip

log = logging.getLogger("synfin")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request or read a chunk
# bcrypt of "fakepassword" (the toolkit's decoy): an unknown user costs one bcrypt check as a
# known one does, so answer times do not tell which user names exist.
DECOY_HASH = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
BCRYPT_BYTES = 72  # bcrypt reads no further; Python's bcrypt 5 raises beyond, Go's ignores
VERSION = re.compile(r"\d{1,9}(?:\.\d{1,9})*")
HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


class BasicAuth:
    """WSGI middleware: 401 unless the request carries a configured user's password."""

    def __init__(self, app: WSGIApp, users: dict[str, bytes]) -> None:
        self.app, self.users = app, users
        self._verified: set[bytes] = set()  # digests of checked credentials: bcrypt is slow
        self._lock = threading.Lock()

    def _allowed(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            name, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8
            return False
        hashed = self.users.get(name)
        secret = password.encode()[:BCRYPT_BYTES]
        digest = hashlib.sha256((hashed or DECOY_HASH) + b"\0" + secret).digest()
        with self._lock:
            if hashed and any(hmac.compare_digest(digest, seen) for seen in self._verified):
                return True
        try:
            matches = bcrypt.checkpw(secret, hashed or DECOY_HASH)
        except ValueError:
            matches = False
        if matches and hashed:
            with self._lock:
                self._verified.add(digest)
            return True
        return False

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if self._allowed(environ.get("HTTP_AUTHORIZATION", "")):
            return self.app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [("WWW-Authenticate", 'Basic realm="synfin"'), ("Content-Type", "text/plain")],
        )
        return [b"Unauthorized\n"]


class RateLimited:
    """WSGI middleware: a token bucket as Go's rate.Limiter (the toolkit's): ``burst`` requests
    at once, refilled one per ``interval``; beyond it, 429."""

    def __init__(self, app: WSGIApp, limit: RateLimit) -> None:
        self.app, self.limit = app, limit
        self._tokens, self._at = float(limit.burst), time.monotonic()
        self._lock = threading.Lock()

    def _take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            refill = (now - self._at) / self.limit.interval
            self._tokens, self._at = min(self.limit.burst, self._tokens + refill), now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if self._take():
            return self.app(environ, start_response)
        start_response("429 Too Many Requests", [("Content-Type", "text/plain")])
        return [b"Too Many Requests\n"]


def with_headers(app: WSGIApp, headers: tuple[tuple[str, str], ...]) -> WSGIApp:
    """The web config's headers on every answer synfin gives (401 and 429 too)."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, response: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, [*response, *headers], *exc)

        return app(environ, start)

    return wrapped


class Streaming:
    """An answer sent as it is produced (server-sent events): ``guarded`` passes it on
    instead of gathering it, and the server calls ``close`` when the client goes away."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


def guarded(app: WSGIApp) -> WSGIApp:
    """A bug met by a request is one log line and a 500, not a traceback on stderr."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            answer = app(environ, start_response)
            if isinstance(answer, Streaming):
                return answer
            return list(answer)
        except Exception as error:
            log.warning(
                "synfin: error answering %s: %s (fix: report it)",
                one_line(repr(environ.get("PATH_INFO", "")), 80),
                one_line(f"{type(error).__name__}: {error}"),
            )
            start_response(
                "500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info()
            )
            return [b"Internal error\n"]

    return wrapped


def _readable_accept(accept: str) -> bool:
    # prometheus_client compares Accept's version= as numbers (a TypeError on any other text)
    # and copies it into Content-Type: hand it only headers it can read.
    if not all(" " <= char <= "~" for char in accept):
        return False
    for part in accept.split(","):
        for parameter in part.split(";")[1:]:
            key, _, value = parameter.strip().partition("=")
            if key == "version" and not VERSION.fullmatch(value):
                return False
    return True


def routes(metrics: WSGIApp) -> WSGIApp:
    """/metrics, a pointer to it at /, and 404 for anything else."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            if not _readable_accept(environ.get("HTTP_ACCEPT", "")):
                environ = {k: v for k, v in environ.items() if k != "HTTP_ACCEPT"}
            return metrics(environ, start_response)
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"synfin: TCP handshake and teardown metrics at /metrics\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found: synfin serves /metrics\n"]

    return app


def build_app(
    metrics: WSGIApp, config: WebConfig, router: Callable[[WSGIApp], WSGIApp] = routes
) -> WSGIApp:
    """``router`` gives the paths served (/metrics, or the web view's); the web config's auth,
    rate limit and headers wrap them all."""
    app = router(metrics)
    if config.users:
        app = BasicAuth(app, config.users)
    if config.rate_limit:
        app = RateLimited(app, config.rate_limit)  # before auth, as the toolkit: bcrypt is dear
    if config.headers:
        app = with_headers(app, config.headers)
    return guarded(app)


class _DebugLog:
    """wsgiref prints a traceback for a client gone mid-answer; keep it out of stderr."""

    def write(self, text: str) -> None:
        if text.strip():
            log.debug("http: %s", text.rstrip())

    def flush(self) -> None:
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scraper that never reads holds only its own thread
    # socketserver's default backlog of 5 drops SYNs when many scrapers connect at once.
    request_queue_size = 1024
    address_family = socket.AF_INET
    allow_reuse_address = True
    ssl_context: ssl.SSLContext | None = None
    allowed_sans: tuple[str, ...] = ()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        if self.ssl_context is not None:
            # The handshake runs in the request's thread, so a slow client cannot stall accept().
            conn = self.ssl_context.wrap_socket(
                conn, server_side=True, do_handshake_on_connect=False
            )
        return conn, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("synfin: error serving a request: %s", one_line(repr(sys.exc_info()[1])))


class _QuietHandler(WSGIRequestHandler):
    # StreamRequestHandler puts it on the socket: every read and write (and the TLS handshake)
    # gives up after it, so a client that sends half a request and stops is dropped.
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: object) -> None:
        pass

    def get_stderr(self) -> Any:
        return _DebugLog()

    def handle(self) -> None:
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()
                if not web_tls.peer_allowed(self.connection, self.server.allowed_sans):  # type: ignore[attr-defined]
                    return  # as the toolkit: no allowed SAN in the certificate, no answer
            super().handle()
        except (ssl.SSLError, OSError):
            pass  # plain HTTP to a TLS port, a client gone mid-request: nothing to answer


def parse_listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if (
        not sep
        or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536)
        or not (host == "" or _is_ip(host) or HOSTNAME.fullmatch(host))
    ):
        raise SynfinError(
            f"listen address {text!r} is not HOST:PORT", "for example 0.0.0.0:9977 or [::1]:9977"
        )
    return host or "0.0.0.0", int(port)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def serve(
    app: WSGIApp,
    listen: str,
    config: WebConfig,
    start: bool = True,
    router: Callable[[WSGIApp], WSGIApp] = routes,
) -> tuple[WSGIServer, threading.Thread]:
    """Listen, and serve ``app`` on a background thread (started here unless ``start`` is
    False: then the caller starts it); the caller shuts the server down."""
    host, port = parse_listen_address(listen)
    server_class = type("Server", (_Server,), {})
    if ":" in host:
        server_class.address_family = socket.AF_INET6
    if config.tls:
        server_class.ssl_context = web_tls.server_context(config.tls)
        server_class.allowed_sans = config.tls.client_allowed_sans
    try:
        server = make_server(
            host, port, build_app(app, config, router), server_class, _QuietHandler
        )
    except OSError as error:
        raise SynfinError(
            f"cannot listen on {listen}: {error.strerror}", "choose another --listen-address"
        ) from None
    thread = threading.Thread(target=server.serve_forever, name="synfin-http", daemon=True)
    if start:
        thread.start()
    return server, thread
