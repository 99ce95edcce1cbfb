"""The web config's ``tls_server_config`` read into TlsSettings: each of the exporter-toolkit's
keys enforced (web_tls.py builds the context) or refused with the reason."""

from __future__ import annotations

from typing import Any

from synfin.exporter import web_tls
from synfin.exporter.web_tls import Material, TlsSettings, WebConfigError
from synfin.exporter.yaml_file import SectionReader, quoted, read_bounded

TLS_KEYS = (
    "cert_file", "key_file", "cert", "key", "client_auth_type", "client_ca_file", "client_ca",
    "client_allowed_sans", "min_version", "max_version", "cipher_suites",
    "prefer_server_cipher_suites", "curve_preferences",
)  # fmt: skip


def _material(
    reader: SectionReader, tls: dict[str, Any], file_key: str, inline_key: str
) -> Material | None:
    keys = ("tls_server_config",)
    name, inline = reader.text(tls, keys, file_key), reader.text(tls, keys, inline_key)
    if name and inline:
        reader.fail((*keys, inline_key), f"{file_key} and {inline_key} both given", "keep one")
    if inline:
        return Material(f"{inline_key} (inline)", inline.encode())
    if not name:
        return None
    path = reader.path.parent / name  # an absolute name stays as it is
    try:
        return Material(f"{file_key} {path}", read_bounded(path, file_key, WebConfigError))
    except OSError as error:
        reader.fail(
            (*keys, file_key),
            f"cannot read {file_key} {path}: {error.strerror}",
            "check the path (a relative one is taken from the web config's folder)",
        )
    except ValueError:
        reader.fail((*keys, file_key), f"{file_key} contains a NUL byte", "check the path")


def _client_auth(reader: SectionReader, tls: dict[str, Any]) -> tuple[str, Material | None, tuple]:
    keys = ("tls_server_config",)
    auth = reader.text(tls, keys, "client_auth_type") or "NoClientCert"
    where = (*keys, "client_auth_type")
    if auth in web_tls.UNVERIFIED_CLIENT_AUTH:
        reader.fail(
            where,
            f"client_auth_type {auth} cannot be enforced: it takes a client certificate "
            "without verifying it, and Python's ssl verifies every certificate it asks for",
            "use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file",
        )
    if auth not in web_tls.CLIENT_AUTH:
        reader.fail(
            where,
            f"unknown client_auth_type {quoted(auth)}",
            f"use one of {', '.join(web_tls.TOOLKIT_CLIENT_AUTH)}",
        )
    ca = _material(reader, tls, "client_ca_file", "client_ca")
    if ca and auth == "NoClientCert":
        reader.fail(
            (*keys, "client_ca_file" if "client_ca_file" in tls else "client_ca"),
            "a client CA is given but client_auth_type is NoClientCert: no client certificate "
            "is asked for",
            "set client_auth_type: RequireAndVerifyClientCert, or remove client_ca_file",
        )
    if not ca and auth != "NoClientCert":
        reader.fail(
            where,
            f"{auth} needs client_ca_file",
            "add the CA that signs client certificates (synfin does not fall back to the "
            "system's CAs)",
        )
    sans = reader.texts(tls, keys, "client_allowed_sans")
    if sans is not None and auth != "RequireAndVerifyClientCert":
        reader.fail(
            (*keys, "client_allowed_sans"),
            f"client_allowed_sans needs client_auth_type RequireAndVerifyClientCert: with "
            f"{auth} a client without a certificate is not checked",
            "set client_auth_type: RequireAndVerifyClientCert",
        )
    if sans is not None and (not sans or not all(sans)):
        reader.fail(
            (*keys, "client_allowed_sans"),
            "client_allowed_sans is empty: no client certificate could match",
            "list the SANs to let in, or remove the key",
        )
    return auth, ca, sans or ()


def _protocol(reader: SectionReader, tls: dict[str, Any]) -> dict[str, Any]:
    keys = ("tls_server_config",)
    low = reader.text(tls, keys, "min_version") or "TLS12"
    high = reader.text(tls, keys, "max_version") or "TLS13"
    for name, version in (("min_version", low), ("max_version", high)):
        if version not in web_tls.VERSIONS:
            reader.fail(
                (*keys, name),
                f"unknown {name} {quoted(version)}",
                "use TLS10, TLS11, TLS12 or TLS13",
            )
    if web_tls.VERSIONS[low] > web_tls.VERSIONS[high]:
        reader.fail(
            (*keys, "min_version"), f"min_version {low} is above max_version {high}", "swap them"
        )
    suites = reader.texts(tls, keys, "cipher_suites") or ()
    for suite in suites:
        if suite in web_tls.TLS13_SUITES:
            reader.fail(
                (*keys, "cipher_suites"),
                f"{suite} is a TLS 1.3 suite, and TLS 1.3 suites cannot be chosen with Python's "
                "ssl (Go ignores them in cipher_suites too)",
                "list TLS 1.2 suites only; TLS 1.3 uses OpenSSL's, all AEAD",
            )
        if suite not in web_tls.CIPHER_SUITES:
            reader.fail(
                (*keys, "cipher_suites"),
                f"unknown cipher suite {quoted(suite)}",
                f"use Go's names: {', '.join(web_tls.CIPHER_SUITES)}",
            )
    if suites and low == "TLS13":
        reader.fail(
            (*keys, "cipher_suites"),
            "cipher_suites has no effect with min_version TLS13: TLS 1.3 suites cannot be "
            "chosen with Python's ssl",
            "remove cipher_suites, or set min_version: TLS12",
        )
    curves = reader.texts(tls, keys, "curve_preferences") or ()
    for curve in curves:
        if curve not in web_tls.TOOLKIT_CURVES:
            reader.fail(
                (*keys, "curve_preferences"),
                f"unknown curve {quoted(curve)}",
                f"use one of {', '.join(web_tls.TOOLKIT_CURVES)}",
            )
    if "X25519" in curves or len(curves) > 1:
        reader.fail(
            (*keys, "curve_preferences"),
            "Python's ssl sets exactly one curve, and only a prime one (not X25519)",
            "list one of CurveP256, CurveP384, CurveP521, or remove curve_preferences for "
            "OpenSSL's defaults",
        )
    prefer = reader.flag(tls, keys, "prefer_server_cipher_suites")
    return {
        "min_version": low,
        "max_version": high,
        "cipher_suites": suites,
        "prefer_server_cipher_suites": prefer is not False,
        "curve": curves[0] if curves else None,
    }


def read_tls(reader: SectionReader, top: dict[str, Any]) -> TlsSettings | None:
    """tls_server_config as TlsSettings (None: no TLS); the SSLContext is built once here so a
    bad certificate stops synfin at start, not at the first scrape."""
    keys = ("tls_server_config",)
    tls = reader.section(top, keys, TLS_KEYS)
    has_cert = bool(reader.text(tls, keys, "cert_file") or reader.text(tls, keys, "cert"))
    has_key = bool(reader.text(tls, keys, "key_file") or reader.text(tls, keys, "key"))
    if not has_cert and not has_key:
        for name, value in tls.items():
            if value is not None:
                reader.fail(
                    (*keys, name),
                    f"{name} has no effect without a certificate",
                    "add cert_file and key_file, or remove it",
                )
        return None
    if has_cert != has_key:
        reader.fail(keys, "cert_file and key_file go together", "give both, or neither")
    cert = _material(reader, tls, "cert_file", "cert")
    key = _material(reader, tls, "key_file", "key")
    if cert is None or key is None:  # cannot happen after the check above; narrows the types
        reader.fail(keys, "cert_file and key_file go together", "give both, or neither")
    auth, ca, sans = _client_auth(reader, tls)
    settings = TlsSettings(cert, key, auth, ca, sans, **_protocol(reader, tls))
    web_tls.server_context(settings)  # fail now, not at the first scrape
    return settings
