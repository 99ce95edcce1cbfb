"""The web config read strictly, without root: what each key becomes, and the pieces the real
server tests (tests/integration/test_web_config.py) rely on."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from synfin.exporter.web import RateLimited, WebConfigError, load_web_config
from synfin.exporter.web_config import RateLimit, go_duration
from synfin.exporter.web_tls import peer_names, server_context


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=synfin", "-keyout", str(folder / "tls.key"),
         "-out", str(folder / "tls.crt")],
        capture_output=True, check=True,
    )  # fmt: skip
    return folder


def load(folder: Path, text: str) -> object:
    (folder / "web.yml").write_text(text)
    return load_web_config(folder / "web.yml")


TLS = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"


def test_what_each_key_becomes(folder: Path) -> None:
    config = load(
        folder,
        TLS + "  min_version: TLS10\n  max_version: TLS12\n  prefer_server_cipher_suites: false\n"
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA]\n"
        "  curve_preferences: [CurveP384]\n"
        "http_server_config:\n  http2: false\n  headers:\n    X-XSS-Protection: 1\n"
        "    X-Frame-Options: deny\n    Content-Security-Policy: ''\n"
        "rate_limit:\n  interval: 1m30s\n  burst: 3\n",
    )
    assert config.tls.cert.origin == f"cert_file {folder / 'tls.crt'}"  # from the file's folder
    assert (config.tls.min_version, config.tls.max_version) == ("TLS10", "TLS12")
    assert config.tls.curve == "CurveP384" and not config.tls.prefer_server_cipher_suites
    # `1` is written as Go's YAML reads it into a string; a blank header is unset.
    assert config.headers == (("X-XSS-Protection", "1"), ("X-Frame-Options", "deny"))
    assert config.rate_limit == RateLimit(90.0, 3)
    context = server_context(config.tls)
    assert context.maximum_version.name == "TLSv1_2"


def test_no_tls_section_means_plain_http(folder: Path) -> None:
    assert load(folder, "").tls is None
    assert load(folder, "tls_server_config:\nrate_limit:\n  interval: 0\n").rate_limit is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config: []\n", "tls_server_config must be a mapping"),
        (TLS + "  cert: x\n", "cert_file and cert both given"),
        (TLS + "  client_allowed_sans: []\n", "client_allowed_sans needs client_auth_type"),
        (TLS + "  cipher_suites: TLS_RSA_WITH_AES_128_CBC_SHA\n", "must be a list of strings"),
        (TLS + "  prefer_server_cipher_suites: maybe\n", "must be true or false"),
        ("rate_limit:\n  interval: 1\n  burst: 1\n", "interval 1 is not a duration"),
        ("rate_limit:\n  burst: 1\n", "burst has no effect with no interval"),
        ("basic_auth_users:\n  'a:b': $2y$10$" + "a" * 53 + "\n", "cannot be sent in basic auth"),
        ('http_server_config:\n  headers:\n    X-XSS-Protection: "1\\n2"\n', "printable ASCII"),
        ("a: &x 1\nb: *x\n", "unknown key a in the top level"),
        ("<<: {tls_server_config: {}}\ntls_server_config: {}\n", None),  # YAML's merge: no slip
    ],
)
def test_refusals(folder: Path, text: str, message: str | None) -> None:
    if message is None:
        load(folder, text)
        return
    with pytest.raises(WebConfigError) as raised:
        load(folder, text)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_go_durations() -> None:
    assert go_duration("1h2m3.5s") == 3723.5
    assert go_duration("250ms") == 0.25
    assert go_duration("0") == 0.0
    assert go_duration("-1s") is None and go_duration("1") is None and go_duration("") is None


def test_sans_as_go_writes_them() -> None:
    peer = {"subjectAltName": (("DNS", "a.example"), ("IP Address", "2001:DB8:0:0:0:0:0:1\n"),
                               ("email", "x@example"), ("DirName", "ignored"))}  # fmt: skip
    assert peer_names(peer) == {"a.example", "2001:db8::1", "x@example"}


def test_the_rate_limit_refills_one_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("synfin.exporter.web.time.monotonic", lambda: now[0])
    limited = RateLimited(lambda *_: [b"ok"], RateLimit(interval=2.0, burst=2))
    assert [limited._take() for _ in range(3)] == [True, True, False]
    now[0] += 2.0
    assert [limited._take() for _ in range(2)] == [True, False]
