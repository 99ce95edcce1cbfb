"""Every key of the web config against a real `synfin run`, checked with real clients (curl and
openssl s_client): each enforced key does what the exporter-toolkit documents, each refused
key stops synfin with one line. docs/security.md's table is filled from these tests."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from .servers import SYNFIN, synfin_run

pytestmark = pytest.mark.bpf


@dataclass(frozen=True)
class Pki:
    folder: Path  # the server's tls.crt and tls.key, a client CA, and client certificates

    def __truediv__(self, name: str) -> Path:
        return self.folder / name


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], capture_output=True, check=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", folder / "tls.key",
            "-out", folder / "tls.crt")  # fmt: skip
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=clients",
            "-keyout", folder / "ca.key", "-out", folder / "ca.crt")  # fmt: skip
    for name, san in [("scraper", "DNS:scraper.example"), ("other", "DNS:other.example")]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", folder / f"{name}.key", "-out", folder / f"{name}.csr")  # fmt: skip
        (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", folder / f"{name}.csr", "-CA", folder / "ca.crt",
                "-CAkey", folder / "ca.key", "-CAcreateserial", "-days", "1",
                "-extfile", folder / f"{name}.ext", "-out", folder / f"{name}.crt")  # fmt: skip
    # Right SAN, but signed by nobody the server trusts.
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=stranger",
            "-addext", "subjectAltName=DNS:scraper.example", "-keyout", folder / "stranger.key",
            "-out", folder / "stranger.crt")  # fmt: skip
    return Pki(folder)


@contextmanager
def serving(pki: Pki, config: str) -> Iterator[int]:
    """`synfin run` with this web config, written beside the certificates (relative names in
    it are taken from there, as the toolkit takes them)."""
    path = pki / "web.yml"
    path.write_text(textwrap.dedent(config))
    with synfin_run(f"--web-config-file={path}", "--ground-truth=off") as (_daemon, port):
        yield port


@dataclass(frozen=True)
class Answer:
    code: str  # "000" when no HTTP answer came
    headers: str
    http_version: str


def curl(pki: Pki, port: int, *args: str, path: str = "/metrics") -> Answer:
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-D", "-", "-w", "\n%{http_code} %{http_version}",
         "--cacert", str(pki / "tls.crt"), *args, f"https://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    headers, _, last = result.stdout.rpartition("\n")
    code, _, version = last.partition(" ")
    return Answer(code, headers, version)


def client_cert(pki: Pki, name: str) -> tuple[str, ...]:
    return ("--cert", str(pki / f"{name}.crt"), "--key", str(pki / f"{name}.key"))


@dataclass(frozen=True)
class Handshake:
    protocol: str | None  # None: no session
    cipher: str | None
    output: str


def s_client(port: int, *args: str) -> Handshake:
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
        input="", capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    out = result.stdout + result.stderr
    for line in out.splitlines():
        if line.startswith("New, ") and "Cipher is" in line:
            protocol, cipher = line[5:].split(", Cipher is ")
            if cipher.strip() != "(NONE)":
                return Handshake(protocol, cipher.strip(), out)
    return Handshake(None, None, out)


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYNFIN, "run", "--web-config-file", str(config), "--check", "--ground-truth=off"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


TLS = """\
tls_server_config:
  cert_file: tls.crt
  key_file: tls.key
"""
LEGACY_CLIENT = ("--ciphers", "DEFAULT@SECLEVEL=0")  # curl's OpenSSL offers TLS 1.0/1.1 only so


def test_the_reported_config_min_version_tls13_and_a_header(pki: Pki) -> None:
    """The issue's node_exporter config: --check said OK, then TLS 1.2 got 200 and no header."""
    config = (
        TLS + "  min_version: TLS13\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    )
    (pki / "issue.yml").write_text(config)
    assert "configuration OK" in check(pki / "issue.yml").stderr
    with serving(pki, config) as port:
        assert curl(pki, port, "--tls-max", "1.2").code == "000"
        assert s_client(port, "-tls1_2").protocol is None
        answer = curl(pki, port, "--tlsv1.3")
        assert answer.code == "200"
        assert "X-Frame-Options: deny" in answer.headers
        assert s_client(port, "-tls1_3").protocol == "TLSv1.3"


def test_tls12_is_the_default_minimum_and_max_version_caps(pki: Pki) -> None:
    with serving(pki, TLS) as port:
        assert curl(pki, port, *LEGACY_CLIENT, "--tlsv1.1", "--tls-max", "1.1").code == "000"
        assert curl(pki, port, "--tls-max", "1.2").code == "200"
        assert s_client(port).protocol == "TLSv1.3"
    with serving(pki, TLS + "  max_version: TLS12\n") as port:
        assert curl(pki, port, "--tlsv1.3").code == "000"
        assert s_client(port).protocol == "TLSv1.2"


def test_min_version_tls10_lets_tls10_in(pki: Pki) -> None:
    with serving(pki, TLS + "  min_version: TLS10\n") as port:
        assert curl(pki, port, *LEGACY_CLIENT, "--tlsv1.0", "--tls-max", "1.0").code == "200"
        assert s_client(port, "-tls1", "-cipher", "DEFAULT@SECLEVEL=0").protocol == "TLSv1.0"


AES128, AES256 = "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"
SUITES = """\
  max_version: TLS12
  cipher_suites:
    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
"""


@pytest.mark.parametrize(("prefer", "chosen"), [("true", AES256), ("false", AES128)])
def test_cipher_suites_and_whose_order_wins(pki: Pki, prefer: str, chosen: str) -> None:
    with serving(pki, TLS + SUITES + f"  prefer_server_cipher_suites: {prefer}\n") as port:
        assert s_client(port, "-tls1_2", "-cipher", f"{AES128}:{AES256}").cipher == chosen
        assert curl(pki, port, "--ciphers", "ECDHE-RSA-CHACHA20-POLY1305").code == "000"
        assert curl(pki, port, "--ciphers", AES128).code == "200"


def test_curve_preferences_of_one_curve(pki: Pki) -> None:
    with serving(pki, TLS + "  curve_preferences: [CurveP384]\n") as port:
        assert s_client(port, "-groups", "P-256").protocol is None
        # TLS 1.2 may also agree on RSA key exchange, which uses no curve: ask for ECDHE.
        assert s_client(port, "-tls1_2", "-groups", "P-256", "-cipher", "ECDHE").protocol is None
        assert s_client(port, "-tls1_2", "-groups", "P-384", "-cipher", "ECDHE").protocol
        accepted = s_client(port, "-groups", "P-384")
        assert accepted.protocol == "TLSv1.3"
        assert "Server Temp Key: ECDH, secp384r1" in accepted.output


def test_require_and_verify_with_allowed_sans(pki: Pki) -> None:
    config = (
        TLS
        + """\
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  client_allowed_sans: [scraper.example]
"""
    )
    with serving(pki, config) as port:
        assert curl(pki, port).code == "000"  # no certificate
        assert curl(pki, port, *client_cert(pki, "scraper")).code == "200"
        assert curl(pki, port, *client_cert(pki, "other")).code == "000"  # SAN not allowed
        assert curl(pki, port, *client_cert(pki, "stranger")).code == "000"  # CA unknown
    with serving(pki, config.replace("  client_allowed_sans: [scraper.example]\n", "")) as port:
        assert curl(pki, port, *client_cert(pki, "other")).code == "200"


def test_verify_if_given_and_no_client_cert(pki: Pki) -> None:
    config = TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"
    with serving(pki, config) as port:
        assert curl(pki, port).code == "200"
        assert curl(pki, port, *client_cert(pki, "scraper")).code == "200"
        assert curl(pki, port, *client_cert(pki, "stranger")).code == "000"
    with serving(pki, TLS + "  client_auth_type: NoClientCert\n") as port:
        assert curl(pki, port, *client_cert(pki, "stranger")).code == "200"  # never asked


def test_inline_pem_and_paths_from_the_config_folder(pki: Pki) -> None:
    def block(name: str) -> str:
        return textwrap.indent((pki / name).read_text(), "    ")

    config = (
        f"tls_server_config:\n  cert: |\n{block('tls.crt')}  key_file: tls.key\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca: |\n{block('ca.crt')}"
    )
    with serving(pki, config) as port:
        assert curl(pki, port, *client_cert(pki, "scraper")).code == "200"
        assert curl(pki, port, *client_cert(pki, "stranger")).code == "000"


HEADERS = {
    "Content-Security-Policy": "default-src 'self'",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "sameorigin",
    "X-XSS-Protection": "1; mode=block",
}


def test_headers_on_every_answer_with_basic_auth_and_http2_off(pki: Pki) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    config = (
        TLS
        + "http_server_config:\n  http2: false\n  headers:\n"
        + "".join(f'    {name}: "{value}"\n' for name, value in HEADERS.items())
        + f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    with serving(pki, config) as port:
        answers = {
            "200": curl(pki, port, "-u", "prometheus:s3cret"),
            "401": curl(pki, port, "-u", "prometheus:wrong"),
            "404": curl(pki, port, "-u", "prometheus:s3cret", path="/nothing"),
        }
        for code, answer in answers.items():
            assert answer.code == code
            for name, value in HEADERS.items():
                assert f"{name}: {value}\n" in answer.headers, (code, name)
        assert curl(pki, port, "--http2", "-u", "prometheus:s3cret").http_version.startswith("1")


def test_rate_limit(pki: Pki) -> None:
    config = TLS + "rate_limit:\n  interval: 1h\n  burst: 2\n"
    with serving(pki, config) as port:
        codes = [curl(pki, port).code for _ in range(3)]
    assert codes == ["200", "200", "429"]


# Copied from the exporter-toolkit's documentation (docs/web-config.yml and web/web-config.yml),
# which node_exporter's README points to; the certificate names are relative to the file.
TOOLKIT_EXAMPLE = """\
# TLS and basic authentication configuration example.
#
# Additionally, a certificate and a key file are needed.
tls_server_config:
  cert_file: server.crt
  key_file: server.key

# Usernames and passwords required to connect.
# Passwords are hashed with bcrypt: https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md#about-bcrypt.
basic_auth_users:
  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze
  bob: $2y$10$hLqFl9jSjoAAy95Z/zw8Ye8wkdMBM8c5Bn1ptYqP/AXyV0.oy0S8m

# Rate limiting requests on the endpoint using a token bucket
rate_limit:
  interval: "1s" # time interval between two requests, set to 0 to disable rate limiter
  burst: 20 # and permits a burst of up to 20 requests.
"""
MINIMAL_EXAMPLE = """\
# Minimal TLS configuration example. Additionally, a certificate and a key file
# are needed.
tls_server_config:
  cert_file: server.crt
  key_file: server.key
"""


def test_the_toolkit_documentation_examples_work_as_there(pki: Pki) -> None:
    for name in ("crt", "key"):
        (pki / f"server.{name}").write_bytes((pki / f"tls.{name}").read_bytes())
    with serving(pki, MINIMAL_EXAMPLE) as port:
        assert curl(pki, port).code == "200"
    with serving(pki, TOOLKIT_EXAMPLE) as port:
        assert curl(pki, port).code == "401"
        assert curl(pki, port, "-u", "alice:not-her-password").code == "401"


# The toolkit's own test configurations (web/testdata/) that Python's ssl cannot honour.
REFUSED = {
    "allCurves": (
        "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"
        "  curve_preferences: [CurveP256, CurveP384, CurveP521, X25519]\n",
        "sets exactly one curve",
    ),
    "allCiphers": (
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n",
        "TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite",
    ),
    "requireanyclientcert": (
        "  client_auth_type: RequireAnyClientCert\n",
        "client_auth_type RequireAnyClientCert cannot be enforced",
    ),
    "headers_extra_header": (
        "http_server_config:\n  headers:\n    Content-Type: foo\n",
        "Content-Type",
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_what_cannot_be_honoured_is_refused_in_one_line(pki: Pki, name: str) -> None:
    extra, message = REFUSED[name]
    (pki / f"{name}.yml").write_text(TLS + extra)
    result = check(pki / f"{name}.yml")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("synfin: error: web config")
    assert message in result.stderr
