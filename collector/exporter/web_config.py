"""The web config file, in the Prometheus exporter-toolkit's format, read strictly.

Every key the toolkit knows is either enforced or refused with the reason (docs/security.md
has the table); an unknown key anywhere is refused naming it, its place and the keys allowed
there, as the toolkit's strict YAML does. Relative paths are taken from the file's folder, as
the toolkit takes them.

    tls_server_config:
      cert_file: /etc/synfin/tls.crt
      key_file: /etc/synfin/tls.key
      min_version: TLS13
    http_server_config:
      headers:
        X-Frame-Options: deny
    basic_auth_users:
      prometheus: $2y$10$...                           # bcrypt hash
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synfin.exporter.tls_settings import read_tls
from synfin.exporter.web_tls import TlsSettings, WebConfigError
from synfin.exporter.yaml_file import SectionReader, parse_yaml, quoted, read_bounded, shown

TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
HTTP_KEYS = ("http2", "headers")
RATE_KEYS = ("interval", "burst")
# The only headers the toolkit lets a web config set (every exporter answers alike), with the
# values it accepts where it checks them.
HEADERS: dict[str, tuple[str, ...]] = {
    "Content-Security-Policy": (),
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
}
BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
MAX_BCRYPT_COST = 20  # each check doubles per step: cost 20 is ~1 min, 31 would be days
DURATION = re.compile(r"(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+")
UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class RateLimit:
    interval: float  # seconds between requests, on average
    burst: int


@dataclass(frozen=True)
class WebConfig:
    tls: TlsSettings | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # name -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()
    rate_limit: RateLimit | None = None


def go_duration(text: str) -> float | None:
    """Seconds in a Go duration ("1s", "1m30s", "250ms"); None if it is not one."""
    if text == "0":
        return 0.0
    if not DURATION.fullmatch(text):
        return None
    return sum(float(n) * UNITS[unit] for n, unit in re.findall(r"(\d+\.?\d*|\.\d+)(\D+)", text))


def _headers(reader: SectionReader, top: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    keys = ("http_server_config",)
    http = reader.section(top, keys, HTTP_KEYS)
    if reader.flag(http, keys, "http2"):
        reader.fail(
            (*keys, "http2"),
            "http2: true cannot be honoured: synfin serves HTTP/1.1 only",
            "set http2: false, or remove it",
        )
    keys = (*keys, "headers")
    headers = reader.section(http, keys, tuple(HEADERS))
    chosen = []
    for name in headers:
        value = reader.text(headers, keys, name) or ""
        if HEADERS[name] and value not in HEADERS[name]:
            reader.fail(
                (*keys, name),
                f"invalid value {quoted(value)} for {name}",
                f"use one of {', '.join(HEADERS[name])}",
            )
        if not all(" " <= char <= "~" for char in value):
            reader.fail((*keys, name), f"{name} must be printable ASCII", "remove line breaks")
        if value:  # blank means unset, as in the toolkit
            chosen.append((name, value))
    return tuple(chosen)


def _rate_limit(reader: SectionReader, top: dict[str, Any]) -> RateLimit | None:
    keys = ("rate_limit",)
    limit = reader.section(top, keys, RATE_KEYS)
    written = limit.get("interval")
    interval: float | None = None  # not a duration
    if written is None or (written == 0 and not isinstance(written, bool)):
        interval = 0.0
    elif isinstance(written, str):
        interval = go_duration(written)
    if interval is None:
        reader.fail(
            (*keys, "interval"),
            f"interval {shown(written)} is not a duration",
            "write one as Go does: 1s, 250ms, 1m30s (0 turns the limit off)",
        )
    burst = limit.get("burst")
    if burst is not None and (not isinstance(burst, int) or isinstance(burst, bool) or burst < 0):
        reader.fail((*keys, "burst"), "burst must be a whole number", "for example burst: 20")
    if not interval:
        if burst is not None:
            reader.fail((*keys, "burst"), "burst has no effect with no interval", "add one")
        return None
    if not burst:
        reader.fail(
            (*keys, "burst"),
            "a rate limit with burst 0 refuses every request",
            "set burst to the requests allowed at once, for example 20",
        )
    return RateLimit(interval, burst)


def _users(reader: SectionReader, top: dict[str, Any]) -> dict[str, bytes]:
    keys = ("basic_auth_users",)
    users = top.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        reader.fail(keys, "basic_auth_users must be a mapping of user: bcrypt hash", "see docs")
    checked: dict[str, bytes] = {}
    for name, hashed in users.items():
        where = (*keys, str(name))
        if not isinstance(name, (str, int)) or isinstance(name, bool) or ":" in str(name):
            reader.fail(where, f"user name {shown(name)} cannot be sent in basic auth", "rename it")
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            reader.fail(
                where,
                f"the password of user {quoted(str(name))} is not a bcrypt hash",
                "generate one with: htpasswd -nbBC 10 USER PASSWORD",
            )
        match = BCRYPT.fullmatch(hashed)
        if not match or not 4 <= int(match[1]) <= 31:
            reader.fail(
                where, f"user {quoted(str(name))} has a malformed bcrypt hash", "generate it again"
            )
        if int(match[1]) > MAX_BCRYPT_COST:
            reader.fail(
                where,
                f"user {quoted(str(name))} has a bcrypt hash of cost {match[1]}: "
                "minutes to days a check",
                "generate it again with cost 10: htpasswd -nbBC 10 USER PASSWORD",
            )
        checked[str(name)] = hashed.encode()
    return checked


def load_web_config(path: Path) -> WebConfig:
    """Read and check a web config file; every problem is one WebConfigError with the fix."""
    try:
        data = read_bounded(path, "web config", WebConfigError)
    except FileNotFoundError:
        raise WebConfigError(
            f"web config {path} not found", "give an existing file to --web-config-file"
        ) from None
    except OSError as error:
        raise WebConfigError(
            f"cannot read web config {path}: {error.strerror}", "check its permissions"
        ) from None
    except ValueError:
        raise WebConfigError(f"web config path {path} contains a NUL byte", "check it") from None
    document = parse_yaml(data, path, "web config", WebConfigError)
    reader = SectionReader(document, path, "web config", WebConfigError)
    top = document.data if document.data is not None else {}
    if not isinstance(top, dict):
        raise WebConfigError(f"web config {path} is not a YAML mapping", "see docs/security.md")
    reader.known(top, (), TOP_KEYS)
    return WebConfig(
        tls=read_tls(reader, top),
        users=_users(reader, top),
        headers=_headers(reader, top),
        rate_limit=_rate_limit(reader, top),
    )
