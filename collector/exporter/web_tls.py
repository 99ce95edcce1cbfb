"""TLS for synfin's server from the exporter-toolkit's ``tls_server_config``, built with Python's
ssl (OpenSSL).

The toolkit's names are Go's crypto/tls names; here they map onto OpenSSL's. What Python's ssl
cannot do is refused when the web config is read (web_config.py), with the reason: a setting
that is accepted and not enforced is worse than one that is refused.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from synfin.errors import SynfinError

VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's tls.CipherSuites() for TLS 1.0-1.2 (plus the RSA key exchange ones older Go lists), as
# OpenSSL names them.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# Python's ssl sets one curve, by OpenSSL name, and only the prime curves (X25519 is no
# EC_KEY curve), for TLS 1.2 and 1.3 alike.
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1"}
TOOLKIT_CURVES = (*CURVES, "X25519")
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go accepts these certificates unverified; OpenSSL through Python verifies every certificate
# it asks for, so they would silently become "verified against nothing" (no client gets in).
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
TOOLKIT_CLIENT_AUTH = (
    "NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)  # fmt: skip
# Forward-secret suites that TLS 1.0 and 1.1 can use (Go's defaults are all ECDHE too).
LEGACY_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES"


class WebConfigError(SynfinError):
    """The web config file cannot be used."""


@dataclass(frozen=True)
class Material:
    """A certificate, key or CA bundle, read once at start (inline PEM, or a file's bytes)."""

    origin: str  # for messages: "cert_file /etc/synfin/tls.crt", "key (inline)"
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class TlsSettings:
    cert: Material
    key: Material
    client_auth_type: str = "NoClientCert"
    client_ca: Material | None = None
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve: str | None = None


@contextmanager
def _as_path(material: Material) -> Iterator[str]:
    """OpenSSL loads certificates by path: give it one holding exactly the bytes synfin read
    (inline PEM too), in memory, where no other process can swap the file meanwhile."""
    fd = os.memfd_create("synfin-tls", os.MFD_CLOEXEC)
    try:
        view = memoryview(material.data)
        while view:
            view = view[os.write(fd, view) :]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _versions_and_ciphers(context: ssl.SSLContext, tls: TlsSettings) -> None:
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0 and 1.1; the web config asked for them explicitly.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = VERSIONS[tls.min_version]
        context.maximum_version = VERSIONS[tls.max_version]
    ciphers = ":".join(CIPHER_SUITES[name] for name in tls.cipher_suites)
    if VERSIONS[tls.min_version] < ssl.TLSVersion.TLSv1_2:
        # OpenSSL 3 speaks TLS 1.0 and 1.1 only at security level 0 (their handshakes hash
        # with SHA-1 and MD5); without this, min_version TLS10 would be accepted and do nothing.
        ciphers = f"{ciphers or LEGACY_CIPHERS}:@SECLEVEL=0"
    if ciphers:
        context.set_ciphers(ciphers)
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve:
        context.set_ecdh_curve(CURVES[tls.curve])


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """The SSLContext the web config describes; WebConfigError if OpenSSL refuses a part."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        _versions_and_ciphers(context, tls)
    except ssl.SSLError as error:
        raise WebConfigError(
            f"OpenSSL refuses the TLS settings: {error}", "see docs/security.md"
        ) from None

    def no_password() -> bytes:
        # Without this OpenSSL would prompt on the terminal for the key's passphrase, and wait.
        raise WebConfigError(
            f"the TLS key {tls.key.origin} is encrypted",
            "decrypt it: openssl pkey -in KEY -out KEY",
        )

    try:
        with _as_path(tls.cert) as cert, _as_path(tls.key) as key:
            context.load_cert_chain(cert, key, password=no_password)
    except (OSError, ssl.SSLError, ValueError) as error:
        raise WebConfigError(
            f"cannot load TLS certificate {tls.cert.origin} and key {tls.key.origin}: {error}",
            "check that both are PEM and belong together",
        ) from None
    context.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca:
        try:
            with _as_path(tls.client_ca) as cafile:
                context.load_verify_locations(cafile)
        except (OSError, ssl.SSLError, ValueError) as error:
            raise WebConfigError(
                f"cannot load client CA {tls.client_ca.origin}: {error}",
                "give PEM certificates",
            ) from None
    return context


def peer_names(peer: dict[str, Any]) -> set[str]:
    """A verified client certificate's SANs, written as Go writes them (DNS, email, IP, URI),
    which is how client_allowed_sans lists them."""
    names = set()
    for kind, value in peer.get("subjectAltName", ()):
        if kind in ("DNS", "email", "URI"):
            names.add(value)
        elif kind == "IP Address":
            names.add(_ip_text(value))
    return names


def _ip_text(value: str) -> str:
    # OpenSSL writes IPv6 SANs uncompressed and upper case; Go (and so the web config) does not.
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


def peer_allowed(connection: ssl.SSLSocket, allowed: tuple[str, ...]) -> bool:
    return not allowed or bool(peer_names(connection.getpeercert() or {}) & set(allowed))
