"""Serving /metrics: TLS and basic auth from a web config file in the Prometheus
exporter-toolkit format, so operators configure synfin as they configure node_exporter.

    tls_server_config:
      cert_file: /etc/synfin/tls.crt
      key_file: /etc/synfin/tls.key
      client_auth_type: RequireAndVerifyClientCert   # optional
      client_ca_file: /etc/synfin/clients.crt        # optional
    basic_auth_users:
      prometheus: $2y$10$...                           # bcrypt hash
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bcrypt
import yaml

from synfin.errors import SynfinError

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WebConfigError(SynfinError):
    """The web config file cannot be used."""


@dataclass(frozen=True)
class WebConfig:
    cert_file: Path | None = None
    key_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # name -> bcrypt hash

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as error:
            raise WebConfigError(
                f"cannot load TLS certificate {self.cert_file} and key {self.key_file}: {error}",
                "check that both files exist, are PEM, and belong together",
            ) from None
        context.verify_mode = CLIENT_AUTH[self.client_auth_type]
        if self.client_ca_file:
            try:
                context.load_verify_locations(str(self.client_ca_file))
            except (OSError, ssl.SSLError) as error:
                raise WebConfigError(
                    f"cannot load client CA {self.client_ca_file}: {error}",
                    "give a PEM certificate file",
                ) from None
        return context


def _text(section: dict[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is not None and not isinstance(value, str):
        raise WebConfigError(f"{where}: {key} must be a string", "quote it in the YAML")
    return value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise WebConfigError(
            f"web config {path} not found", "give an existing file to --web-config-file"
        ) from None
    except OSError as error:
        raise WebConfigError(
            f"cannot read web config {path}: {error.strerror}", "check its permissions"
        ) from None
    except yaml.YAMLError as error:
        first_line = str(error).splitlines()[0]
        raise WebConfigError(
            f"web config {path} is not valid YAML: {first_line}", "fix the YAML"
        ) from None
    if not isinstance(raw, dict):
        raise WebConfigError(
            f"web config {path} is not a YAML mapping", "see docs/security.md for the format"
        )
    unknown = set(raw) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise WebConfigError(
            # YAML keys need not be strings (`? ` makes a null key): name them as written.
            f"web config {path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}",
            "see the format",
        )
    return raw


def _bcrypt_users(users: dict[Any, Any], where: str) -> dict[str, bytes]:
    checked: dict[str, bytes] = {}
    for name, hashed in users.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(
                f"{where}: the password of user {name!r} is not a bcrypt hash",
                "generate one with: htpasswd -nbBC 10 USER PASSWORD",
            )
        try:
            bcrypt.checkpw(b"", hashed.encode())
        except ValueError:
            raise WebConfigError(
                f"{where}: user {name!r} has a malformed bcrypt hash", "generate it again"
            ) from None
        checked[str(name)] = hashed.encode()
    return checked


def load_web_config(path: Path) -> WebConfig:
    """Read and check a web config file; every problem is one WebConfigError with the fix."""
    raw = _read_yaml(path)
    tls = raw.get("tls_server_config") or {}
    users = raw.get("basic_auth_users") or {}
    where = f"web config {path}"
    if not isinstance(tls, dict) or not isinstance(users, dict):
        raise WebConfigError(f"{where}: sections must be mappings", "see the format")
    cert, key = _text(tls, "cert_file", where), _text(tls, "key_file", where)
    if bool(cert) != bool(key):
        raise WebConfigError(
            f"{where}: cert_file and key_file go together", "give both, or neither"
        )
    auth = _text(tls, "client_auth_type", where) or "NoClientCert"
    if auth not in CLIENT_AUTH:
        raise WebConfigError(
            f"{where}: unknown client_auth_type {auth!r}", f"use one of {', '.join(CLIENT_AUTH)}"
        )
    ca = _text(tls, "client_ca_file", where)
    if auth in ("RequireAndVerifyClientCert", "VerifyClientCertIfGiven") and not ca:
        raise WebConfigError(
            f"{where}: {auth} needs client_ca_file", "add the CA that signs client certificates"
        )
    config = WebConfig(
        Path(cert) if cert else None,
        Path(key) if key else None,
        auth,
        Path(ca) if ca else None,
        _bcrypt_users(users, where),
    )
    if config.tls:
        config.ssl_context()  # fail now, not at the first scrape
    return config


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
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(name)
        if hashed is None:
            return False
        digest = hashlib.sha256(hashed + b"\0" + password.encode()).digest()
        with self._lock:
            if any(hmac.compare_digest(digest, seen) for seen in self._verified):
                return True
        if bcrypt.checkpw(password.encode(), hashed):
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


def routes(metrics: WSGIApp) -> WSGIApp:
    """/metrics, a pointer to it at /, and 404 for anything else."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"synfin: TCP handshake and teardown metrics at /metrics\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found: synfin serves /metrics\n"]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scraper that never reads holds only its own thread
    # socketserver's default backlog of 5 drops SYNs when many scrapers connect at once.
    request_queue_size = 1024
    address_family = socket.AF_INET
    allow_reuse_address = True
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        if self.ssl_context is not None:
            # The handshake runs in the request's thread, so a slow client cannot stall accept().
            conn = self.ssl_context.wrap_socket(
                conn, server_side=True, do_handshake_on_connect=False
            )
        return conn, address


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle(self) -> None:
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.settimeout(10)
                self.connection.do_handshake()
            super().handle()
        except (ssl.SSLError, OSError):
            pass  # plain HTTP to a TLS port, a client gone mid-request: nothing to answer


def parse_listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise SynfinError(
            f"listen address {text!r} is not HOST:PORT", "for example 0.0.0.0:9977 or [::1]:9977"
        )
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(app: WSGIApp, listen: str, config: WebConfig) -> tuple[WSGIServer, threading.Thread]:
    """Start serving ``app`` on a background thread; the caller shuts the server down."""
    host, port = parse_listen_address(listen)
    app = routes(app)
    if config.users:
        app = BasicAuth(app, config.users)
    server_class = type("Server", (_Server,), {})
    if ":" in host:
        server_class.address_family = socket.AF_INET6
    server_class.ssl_context = config.ssl_context() if config.tls else None
    try:
        server = make_server(host, port, app, server_class, _QuietHandler)
    except OSError as error:
        raise SynfinError(
            f"cannot listen on {listen}: {error.strerror}", "choose another --listen-address"
        ) from None
    thread = threading.Thread(target=server.serve_forever, name="synfin-http", daemon=True)
    thread.start()
    return server, thread
