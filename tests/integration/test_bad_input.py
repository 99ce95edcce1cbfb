"""The bad-input table (docs/bad-input.md), one test per row, through the real command line:
one line naming the problem and the fix, the documented exit code, no traceback, and no BPF
program left attached."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.paths import REPO

from .servers import bpf_programs, programs_released

SYNFIN = str(Path(sys.executable).parent / "synfin")
DOC = REPO / "docs" / "bad-input.md"
HEADER = '{"synfin_recording":1,"kernel":"6.18","clock_offset_ns":0,"capabilities":{},"reset_reasons":{}}\n'
FORMAT = Path("/sys/kernel/tracing/events/sock/inet_sock_set_state/format")
# Root's uid with every capability gone: what an unprivileged user has, wherever the repo is.
WITHOUT_CAPABILITIES = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


@dataclass(frozen=True)
class Row:
    id: str
    args: list[str]  # {tmp} is the row's scratch directory
    message: str  # part of the one line synfin prints
    code: int
    files: dict[str, str | bytes] = field(default_factory=dict)  # scratch files to create
    env: dict[str, str] = field(default_factory=dict)
    wrap: list[str] = field(default_factory=list)  # a command to run synfin under
    setup: Callable[[Path], None] | None = None


def fake_tracefs(drop_field: str | None) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        events = tmp / "tracefs" / "events"
        events.mkdir(parents=True)
        if drop_field:
            target = events / "sock" / "inet_sock_set_state"
            target.mkdir(parents=True)
            lines = [line for line in FORMAT.read_text().splitlines() if drop_field not in line]
            (target / "format").write_text("\n".join(lines) + "\n")

    return build


def shadow_bcc(tmp: Path) -> None:
    (tmp / "shadow" / "bcc").mkdir(parents=True)
    (tmp / "shadow" / "bcc" / "__init__.py").write_text(
        'raise ImportError("bcc is not installed")\n'
    )


BINARY = bytes(range(128, 256)) * 4  # 512 bytes, none of them UTF-8 on its own
TLS = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"


def key_pair(tmp: Path, *encrypt: str) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         *(encrypt or ["-nodes"]), "-days", "1", "-subj", "/CN=synfin",
         "-keyout", str(tmp / "tls.key"), "-out", str(tmp / "tls.crt")],
        capture_output=True, check=True,
    )  # fmt: skip


def encrypted_key_pair(tmp: Path) -> None:
    key_pair(tmp, "-passout", "pass:secret")


def huge_line(tmp: Path) -> None:
    with (tmp / "huge.jsonl").open("wb") as out:
        out.write(HEADER.encode())
        out.write(b"x" * (100 << 20) + b"\n")


# fmt: off
ROWS = [
    # -- flags --------------------------------------------------------------------------------
    Row("port-zero", ["watch", "--port", "0"], "0 is not in the range 1<=x<=65535", 2),
    Row("port-not-a-number", ["watch", "--port", "http"], "'http' is not a valid integer", 2),
    Row("unknown-family", ["watch", "--family", "ipx"], "'ipx' is not one of", 2),
    Row("unknown-state", ["watch", "--state", "SYN-WAIT"], "'SYN-WAIT' is not a TCP state (one of CLOSED", 2),
    Row("bad-host-address", ["watch", "--host", "10.0.0.300"], "'10.0.0.300' is not an address or CIDR", 2),
    Row("bad-cidr-prefix", ["replay", "x.jsonl", "--host", "10.0.0.0/33"], "'10.0.0.0/33' is not an address or CIDR", 2),
    Row("negative-duration", ["watch", "--duration", "-1"], "-1.0 is not in the range x>0", 2),
    Row("ring-buffer-not-power-of-two", ["watch", "--ring-buffer-pages", "100"], "100 is not a power of two", 2),
    Row("record-without-output", ["record"], "Missing option '-o' / '--output'", 2),
    Row("per-connection-csv", ["watch", "--per-connection", "--csv"], "--per-connection writes text or JSON lines, not CSV", 1),
    Row("per-connection-reconcile", ["watch", "--per-connection", "--reconcile", "1"], "--per-connection has no steps", 1),
    Row("replay-connections-as-csv", ["replay", "{tmp}/c.jsonl", "--csv"], "replays as text or JSON lines, not CSV", 1,
        files={"c.jsonl": '{"synfin_recording": 1, "records": "connections"}\n'}),
    Row("stream-max-sockets-too-small", ["watch", "--max-sockets", "10"], "10 is not in the range 64<=x<=16777216", 2),
    Row("listen-address-without-port", ["run", "--listen-address", "9977", "--check"], "listen address '9977' is not HOST:PORT", 1),
    Row("listen-port-out-of-range", ["run", "--listen-address", "1.2.3.4:99999", "--check"], "is not HOST:PORT", 1),
    Row("unknown-ground-truth", ["run", "--ground-truth", "some"], "'some' is not one of 'all', 'host', 'off'", 2),
    Row("max-sockets-too-small", ["run", "--max-sockets", "1"], "1 is not in the range 64<=x<=16777216", 2),
    Row("unknown-probe-tier", ["run", "--probe-tier", "fast"], "'fast' is not one of 'auto', 'lean', 'timers'", 2),
    Row("label-port-out-of-range", ["run", "--port-label", "70000"], "70000 is not in the range 1<=x<=65535", 2),
    Row("unknown-scenario", ["lab", "teardown-dance"], "'teardown-dance' is not one of", 2),
    Row("lab-without-scenario", ["lab"], "name at least one scenario", 2),
    Row("lab-trace-with-a-storm", ["lab", "syn-flood", "--trace"], "--trace draws connections one by one: not for the load scenarios (syn-flood)", 2),
    Row("unknown-command", ["frobnicate"], "No such command 'frobnicate'", 2),
    Row("trace-svg-without-output", ["trace", "--format", "svg"], "--format svg writes a picture to a file: add -o FILE.svg", 2),
    Row("trace-unknown-netns", ["trace", "--netns", "nosuch-ns"], "network namespace nosuch-ns does not exist", 2),
    Row("trace-host-not-an-address", ["trace", "--host", "example.com"], "'example.com' is not an address or CIDR", 2),
    Row("trace-count-zero", ["trace", "--count", "0"], "0 is not in the range x>=1", 2),
    Row("web-not-an-address", ["web", "--listen-address", "nonsense"], "listen address 'nonsense' is not HOST:PORT", 1),
    Row("web-unknown-netns", ["web", "--netns", "nosuch-ns"], "network namespace nosuch-ns does not exist", 2),
    Row("web-missing-web-config", ["web", "--web-config-file", "{tmp}/missing.yml"], "web config {tmp}/missing.yml not found", 1),
    Row("web-max-pages-zero", ["web", "--max-pages", "0"], "0 is not in the range 1<=x<=256", 2),
    Row("lab-web-not-an-address", ["lab", "client-closes", "--web", "nonsense"], "listen address 'nonsense' is not HOST:PORT", 1),
    Row("trace-unwritable-output", ["trace", "--format", "svg", "-o", "{tmp}/missing/x.svg"], "cannot write {tmp}/missing/x.svg: No such file or directory", 1),
    # -- the config file ----------------------------------------------------------------------
    Row("config-missing", ["run", "--config", "{tmp}/none.yml", "--check"], "cannot read {tmp}/none.yml: No such file or directory", 2),
    Row("config-is-a-directory", ["run", "--config", "{tmp}", "--check"], "is a directory", 2),
    Row("config-malformed-yaml", ["run", "--config", "{tmp}/c.yml", "--check"], "config file {tmp}/c.yml is not valid YAML, line 2", 1, files={"c.yml": "ground_truth: [\n"}),
    Row("config-wrong-type", ["run", "--config", "{tmp}/c.yml", "--check"], "config file {tmp}/c.yml, line 1: max_sockets: 'lots' is not a valid integer", 1, files={"c.yml": "max_sockets: lots\n"}),
    Row("config-not-a-mapping", ["run", "--config", "{tmp}/c.yml", "--check"], "is not a YAML mapping of option: value", 1, files={"c.yml": "- a\n- b\n"}),
    Row("config-unknown-setting", ["run", "--config", "{tmp}/c.yml", "--check"], "line 1: unknown setting listen_adress", 1, files={"c.yml": "listen_adress: a:1\n"}),
    Row("config-binary", ["run", "--config", "{tmp}/c.yml", "--check"], "config file {tmp}/c.yml is not UTF-8 text (byte 0x80 on line 1)", 1, files={"c.yml": BINARY}),
    Row("config-endless", ["run", "--config", "/dev/zero", "--check"], "config file /dev/zero is larger than 1 MiB", 1),
    Row("config-nul-in-a-path", ["run", "--config", "{tmp}/c.yml", "--check"], "web_config_file: embedded null byte", 1, files={"c.yml": 'web_config_file: "a\\0b"\n'}),
    Row("config-setting-twice", ["run", "--config", "{tmp}/c.yml", "--check"], "line 2: key max_sockets given twice (first on line 1) (fix: keep one of them)", 1, files={"c.yml": "max_sockets: 100\nmax_sockets: 200\n"}),
    Row("config-nested-too-deeply", ["run", "--config", "{tmp}/c.yml", "--check"], "is not valid YAML: nested too deeply", 1, files={"c.yml": "[" * 5000}),
    # -- the web config file ------------------------------------------------------------------
    Row("web-config-missing", ["run", "--web-config-file", "{tmp}/none.yml", "--check"], "web config {tmp}/none.yml not found", 1),
    Row("web-config-malformed-yaml", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "is not valid YAML", 1, files={"w.yml": "[unclosed\n"}),
    Row("web-config-plaintext-password", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "is not a bcrypt hash", 1, files={"w.yml": "basic_auth_users:\n  alice: secret\n"}),
    Row("web-config-bad-bcrypt", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "has a malformed bcrypt hash", 1, files={"w.yml": "basic_auth_users:\n  alice: $2y$10$short\n"}),
    Row("web-config-missing-certificate", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "cannot read cert_file {tmp}/none.crt: No such file or directory", 1,
        files={"w.yml": "tls_server_config:\n  cert_file: {tmp}/none.crt\n  key_file: {tmp}/none.key\n"}),
    Row("web-config-cert-without-key", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "cert_file and key_file go together (fix: give both, or neither)", 1, files={"w.yml": "tls_server_config:\n  cert_file: a.crt\n"}),
    Row("web-config-unknown-client-auth", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "unknown client_auth_type 'Sometimes'", 1, files={"w.yml": TLS + "  client_auth_type: Sometimes\n"}, setup=key_pair),
    Row("web-config-unknown-key", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "line 1: unknown key tls_config in the top level (fix: the keys allowed there are tls_server_config, http_server_config, basic_auth_users, rate_limit)", 1, files={"w.yml": "tls_config: {}\n"}),
    Row("web-config-unknown-nested-key", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "line 4: unknown key min_versoin in tls_server_config (fix: the keys allowed there are cert_file, key_file, cert, key,", 1, files={"w.yml": TLS + "  min_versoin: TLS13\n"}, setup=key_pair),
    Row("web-config-key-twice", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "line 5: key min_version given twice (first on line 4)", 1, files={"w.yml": TLS + "  min_version: TLS13\n  min_version: TLS10\n"}, setup=key_pair),
    Row("web-config-binary", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "web config {tmp}/w.yml is not UTF-8 text (byte 0x80 on line 1)", 1, files={"w.yml": BINARY}),
    Row("web-config-endless", ["run", "--web-config-file", "/dev/zero", "--check"], "web config /dev/zero is larger than 1 MiB", 1),
    Row("web-config-binary-certificate", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "cannot load TLS certificate cert_file {tmp}/bin.crt and key key_file {tmp}/tls.key", 1, files={"w.yml": "tls_server_config:\n  cert_file: bin.crt\n  key_file: tls.key\n", "bin.crt": BINARY}, setup=key_pair),
    Row("web-config-binary-key", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "cannot load TLS certificate cert_file {tmp}/tls.crt and key key_file {tmp}/bin.key", 1, files={"w.yml": "tls_server_config:\n  cert_file: tls.crt\n  key_file: bin.key\n", "bin.key": BINARY}, setup=key_pair),
    Row("web-config-binary-client-ca", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "cannot load client CA client_ca_file {tmp}/bin.pem", 1, files={"w.yml": TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: bin.pem\n", "bin.pem": BINARY}, setup=key_pair),
    Row("web-config-encrypted-key", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "the TLS key key_file {tmp}/tls.key is encrypted (fix: decrypt it", 1, files={"w.yml": TLS}, setup=encrypted_key_pair),
    Row("web-config-tls-setting-without-certificate", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "min_version has no effect without a certificate", 1, files={"w.yml": "tls_server_config:\n  min_version: TLS13\n"}),
    Row("web-config-unknown-tls-version", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "unknown min_version 'TLS14' (fix: use TLS10, TLS11, TLS12 or TLS13)", 1, files={"w.yml": TLS + "  min_version: TLS14\n"}, setup=key_pair),
    Row("web-config-min-above-max", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "min_version TLS13 is above max_version TLS12", 1, files={"w.yml": TLS + "  min_version: TLS13\n  max_version: TLS12\n"}, setup=key_pair),
    Row("web-config-unknown-cipher", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "unknown cipher suite 'TLS_RSA_WITH_RC4_128_SHA'", 1, files={"w.yml": TLS + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"}, setup=key_pair),
    Row("web-config-tls13-cipher-suite", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite, and TLS 1.3 suites cannot be chosen with Python's ssl", 1, files={"w.yml": TLS + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"}, setup=key_pair),
    Row("web-config-cipher-suites-with-tls13-only", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "cipher_suites has no effect with min_version TLS13", 1, files={"w.yml": TLS + "  min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n"}, setup=key_pair),
    Row("web-config-unknown-curve", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "unknown curve 'P-256' (fix: use one of CurveP256, CurveP384, CurveP521, X25519)", 1, files={"w.yml": TLS + "  curve_preferences: [P-256]\n"}, setup=key_pair),
    Row("web-config-curves-python-cannot-set", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "Python's ssl sets exactly one curve, and only a prime one (not X25519)", 1, files={"w.yml": TLS + "  curve_preferences: [X25519, CurveP256]\n"}, setup=key_pair),
    Row("web-config-require-any-client-cert", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "client_auth_type RequireAnyClientCert cannot be enforced: it takes a client certificate without verifying it", 1, files={"w.yml": TLS + "  client_auth_type: RequireAnyClientCert\n"}, setup=key_pair),
    Row("web-config-request-client-cert", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "client_auth_type RequestClientCert cannot be enforced", 1, files={"w.yml": TLS + "  client_auth_type: RequestClientCert\n"}, setup=key_pair),
    Row("web-config-verify-without-ca", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "RequireAndVerifyClientCert needs client_ca_file (fix: add the CA that signs client certificates", 1, files={"w.yml": TLS + "  client_auth_type: RequireAndVerifyClientCert\n"}, setup=key_pair),
    Row("web-config-ca-without-client-auth", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "a client CA is given but client_auth_type is NoClientCert", 1, files={"w.yml": TLS + "  client_ca_file: tls.crt\n"}, setup=key_pair),
    Row("web-config-sans-without-verification", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert", 1, files={"w.yml": TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: tls.crt\n  client_allowed_sans: [a]\n"}, setup=key_pair),
    Row("web-config-reserved-header", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "unknown key Server in http_server_config.headers (fix: the keys allowed there are Content-Security-Policy,", 1, files={"w.yml": "http_server_config:\n  headers:\n    Server: synfin\n"}),
    Row("web-config-bad-header-value", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "invalid value 'allow' for X-Frame-Options (fix: use one of deny, sameorigin)", 1, files={"w.yml": "http_server_config:\n  headers:\n    X-Frame-Options: allow\n"}),
    Row("web-config-http2", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "http2: true cannot be honoured: synfin serves HTTP/1.1 only", 1, files={"w.yml": "http_server_config:\n  http2: true\n"}),
    Row("web-config-bad-rate-interval", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "interval fast is not a duration", 1, files={"w.yml": "rate_limit:\n  interval: fast\n  burst: 5\n"}),
    Row("web-config-rate-burst-zero", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "a rate limit with burst 0 refuses every request", 1, files={"w.yml": "rate_limit:\n  interval: 1s\n  burst: 0\n"}),
    Row("web-config-bcrypt-cost", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "has a bcrypt hash of cost 31: minutes to days a check", 1, files={"w.yml": "basic_auth_users:\n  alice: $2y$31$" + "a" * 53 + "\n"}),
    Row("web-config-wrong-type", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "cert_file must be a string", 1, files={"w.yml": "tls_server_config:\n  cert_file: [a]\n"}),
    # -- recordings ---------------------------------------------------------------------------
    Row("replay-missing", ["replay", "{tmp}/none.jsonl"], "{tmp}/none.jsonl: no such file", 1),
    Row("replay-empty", ["replay", "{tmp}/r.jsonl"], "is empty", 1, files={"r.jsonl": ""}),
    Row("replay-not-a-recording", ["replay", "{tmp}/r.jsonl"], "is not a synfin recording", 1, files={"r.jsonl": "hello\n"}),
    Row("replay-binary-garbage", ["replay", "{tmp}/r.jsonl"], "not UTF-8 text", 1, files={"r.jsonl": b"\x00\xff\xfe\x80 garbage"}),
    Row("replay-truncated", ["replay", "{tmp}/r.jsonl"], "r.jsonl:2: truncated last line", 1, files={"r.jsonl": HEADER + '{"kind":"state_change"'}),
    Row("replay-huge-line", ["replay", "{tmp}/huge.jsonl"], "huge.jsonl:2: line longer than 1048576 bytes", 1, setup=huge_line),
    Row("replay-newer-schema", ["replay", "{tmp}/r.jsonl"], "is a schema 7 recording; this synfin reads schema 1", 1, files={"r.jsonl": HEADER.replace(":1,", ":7,", 1)}),
    Row("replay-nested-too-deeply", ["replay", "{tmp}/r.jsonl"], "r.jsonl:2: JSON nested too deeply", 1, files={"r.jsonl": HEADER + "[" * 5000 + "\n"}),
    Row("replay-wrong-event", ["replay", "{tmp}/r.jsonl"], "r.jsonl:2: missing field(s)", 1, files={"r.jsonl": HEADER + '{"kind":"state_change"}\n'}),
    # -- bytes in variables and options ------------------------------------------------------
    Row("variable-binary-listen-address", ["run", "--check"], "listen address '\\udcff\\udcfe:80' is not HOST:PORT", 1, env={"SYNFIN_LISTEN_ADDRESS": "\udcff\udcfe:80"}),
    Row("variable-binary-number", ["run", "--check"], "Invalid value for '--max-sockets': '\\udcff' is not a valid integer range", 2, env={"SYNFIN_MAX_SOCKETS": "\udcff"}),
    Row("option-binary-listen-address", ["run", "--listen-address", "\udcff:80", "--check"], "listen address '\\udcff:80' is not HOST:PORT", 1),
    Row("option-line-break", ["watch", "--state", "time\nwait"], "'time\\nwait' is not a TCP state", 2),
    Row("argument-line-break", ["watch", "a\nb"], "Got unexpected extra argument (a\\nb)", 2),
    # -- the environment ----------------------------------------------------------------------
    Row("not-root", ["watch", "--duration", "1"], "loading BPF programs needs root, or CAP_BPF and CAP_PERFMON", 3, wrap=WITHOUT_CAPABILITIES),
    Row("tracefs-not-mounted", ["watch", "--tracefs", "{tmp}", "--duration", "1"], "tracefs is not mounted at {tmp} (fix: mount -t tracefs", 3),
    Row("tracepoint-missing", ["watch", "--tracefs", "{tmp}/tracefs", "--duration", "1"], "tracepoint sock:inet_sock_set_state not found", 3, setup=fake_tracefs(None)),
    Row("tracepoint-unexpected-layout", ["watch", "--tracefs", "{tmp}/tracefs", "--duration", "1"], "lacks field(s) saddr_v6", 3, setup=fake_tracefs("saddr_v6")),
    Row("bcc-missing", ["watch", "--duration", "1"], "bcc's Python module is not importable", 3, env={"PYTHONPATH": "{tmp}/shadow"}, setup=shadow_bcc),
]
# fmt: on


@pytest.mark.bpf
@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_row(row: Row, tmp_path: Path) -> None:
    for name, content in row.files.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{tmp}", str(tmp_path)))
    if row.setup:
        row.setup(tmp_path)
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in row.args]
    env = os.environ | {k: v.replace("{tmp}", str(tmp_path)) for k, v in row.env.items()}
    before = bpf_programs()
    result = subprocess.run(
        [*row.wrap, SYNFIN, *args], capture_output=True, text=True, env=env, check=False
    )

    assert result.returncode == row.code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert row.message.replace("{tmp}", str(tmp_path)) in result.stderr
    complaint = [
        line for line in result.stderr.splitlines() if line.startswith(("synfin: error:", "Error:"))
    ]
    assert len(complaint) == 1, result.stderr
    assert programs_released(before)  # nothing of synfin's stays attached


@pytest.mark.bpf
def test_a_port_in_use_detaches_before_it_exits() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = bpf_programs()
        result = subprocess.run(
            [SYNFIN, "run", "--listen-address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            check=False,
        )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("Address already in use (fix: choose another --listen-address)")
    )
    assert programs_released(before)


def test_every_row_is_documented() -> None:
    doc = DOC.read_text()
    for row in ROWS:
        assert f"| `{row.id}` |" in doc, f"docs/bad-input.md has no row {row.id}"
        line = next(line for line in doc.splitlines() if line.startswith(f"| `{row.id}` |"))
        assert line.rstrip().endswith(f"| {row.code} |"), f"{row.id}: documented exit code differs"


def test_the_security_table_is_filled_from_tests() -> None:
    """docs/security.md's table of web config keys: every key the exporter-toolkit knows has a
    row, and every row and test the table names exists."""
    doc = (REPO / "docs" / "security.md").read_text()
    table = [line for line in doc.splitlines() if line.startswith("| `")]
    toolkit_keys = [
        "cert_file", "key_file", "cert", "key", "client_auth_type", "client_ca_file", "client_ca",
        "client_allowed_sans", "min_version", "max_version", "cipher_suites",
        "prefer_server_cipher_suites", "curve_preferences", "headers", "http2",
        "basic_auth_users", "interval", "burst",
    ]  # fmt: skip
    for key in toolkit_keys:
        assert any(
            f"`{key}" in line.split(" | ")[0] or f"{key}`" in line.split(" | ")[0] for line in table
        ), key
    web_tests = (REPO / "tests" / "integration" / "test_web_config.py").read_text()
    row_ids = {row.id for row in ROWS}
    for line in table:
        tested = line.split(" | ")[-1]
        for name in re.findall(r"`(test_\w+)", tested):
            assert f"def {name}(" in web_tests or name.startswith("test_run"), name
        for name in re.findall(r"`(web-config-[\w-]+)`", tested):
            assert name in row_ids, name
