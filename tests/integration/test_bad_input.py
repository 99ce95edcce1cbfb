"""The bad-input table (docs/bad-input.md), one test per row, through the real command line:
one line naming the problem and the fix, the documented exit code, no traceback, and no BPF
program left attached."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.paths import REPO

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
    Row("listen-address-without-port", ["run", "--listen-address", "9977", "--check"], "listen address '9977' is not HOST:PORT", 1),
    Row("listen-port-out-of-range", ["run", "--listen-address", "1.2.3.4:99999", "--check"], "is not HOST:PORT", 1),
    Row("unknown-ground-truth", ["run", "--ground-truth", "some"], "'some' is not one of 'all', 'host', 'off'", 2),
    Row("max-sockets-too-small", ["run", "--max-sockets", "1"], "1 is not in the range 64<=x<=16777216", 2),
    Row("label-port-out-of-range", ["run", "--port-label", "70000"], "70000 is not in the range 1<=x<=65535", 2),
    Row("unknown-scenario", ["lab", "teardown-dance"], "'teardown-dance' is not one of", 2),
    Row("lab-without-scenario", ["lab"], "name at least one scenario", 2),
    Row("lab-trace-with-a-storm", ["lab", "syn-flood", "--trace"], "--trace draws connections one by one: not for the load scenarios (syn-flood)", 2),
    Row("unknown-command", ["frobnicate"], "No such command 'frobnicate'", 2),
    Row("trace-svg-without-output", ["trace", "--format", "svg"], "--format svg writes a picture to a file: add -o FILE.svg", 2),
    Row("trace-unknown-netns", ["trace", "--netns", "nosuch-ns"], "network namespace nosuch-ns does not exist", 2),
    Row("trace-host-not-an-address", ["trace", "--host", "example.com"], "'example.com' is not an address or CIDR", 2),
    Row("trace-count-zero", ["trace", "--count", "0"], "0 is not in the range x>=1", 2),
    Row("trace-unwritable-output", ["trace", "--format", "svg", "-o", "{tmp}/missing/x.svg"], "cannot write {tmp}/missing/x.svg: No such file or directory", 1),
    # -- the config file ----------------------------------------------------------------------
    Row("config-missing", ["run", "--config", "{tmp}/none.yml", "--check"], "cannot read {tmp}/none.yml: No such file or directory", 2),
    Row("config-is-a-directory", ["run", "--config", "{tmp}", "--check"], "is a directory", 2),
    Row("config-malformed-yaml", ["run", "--config", "{tmp}/c.yml", "--check"], "is not valid YAML", 2, files={"c.yml": "ground_truth: [\n"}),
    Row("config-wrong-type", ["run", "--config", "{tmp}/c.yml", "--check"], "'lots' is not a valid integer", 2, files={"c.yml": "max_sockets: lots\n"}),
    Row("config-not-a-mapping", ["run", "--config", "{tmp}/c.yml", "--check"], "is not a YAML mapping of option: value", 2, files={"c.yml": "- a\n- b\n"}),
    Row("config-unknown-setting", ["run", "--config", "{tmp}/c.yml", "--check"], "unknown setting(s) listen_adress", 2, files={"c.yml": "listen_adress: a:1\n"}),
    # -- the web config file ------------------------------------------------------------------
    Row("web-config-missing", ["run", "--web-config-file", "{tmp}/none.yml", "--check"], "web config {tmp}/none.yml not found", 1),
    Row("web-config-malformed-yaml", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "is not valid YAML", 1, files={"w.yml": "[unclosed\n"}),
    Row("web-config-plaintext-password", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "is not a bcrypt hash", 1, files={"w.yml": "basic_auth_users:\n  alice: secret\n"}),
    Row("web-config-bad-bcrypt", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "has a malformed bcrypt hash", 1, files={"w.yml": "basic_auth_users:\n  alice: $2y$10$short\n"}),
    Row("web-config-missing-certificate", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "cannot load TLS certificate {tmp}/none.crt", 1,
        files={"w.yml": "tls_server_config:\n  cert_file: {tmp}/none.crt\n  key_file: {tmp}/none.key\n"}),
    Row("web-config-cert-without-key", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "cert_file and key_file go together (fix: give both, or neither)", 1, files={"w.yml": "tls_server_config:\n  cert_file: a.crt\n"}),
    Row("web-config-unknown-client-auth", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "unknown client_auth_type 'Sometimes'", 1, files={"w.yml": "tls_server_config: {client_auth_type: Sometimes}\n"}),
    Row("web-config-unknown-key", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "unknown key(s) tls_config", 1, files={"w.yml": "tls_config: {}\n"}),
    Row("web-config-wrong-type", ["run", "--web-config-file", "{tmp}/w.yml", "--check"], "cert_file must be a string", 1, files={"w.yml": "tls_server_config:\n  cert_file: [a]\n"}),
    # -- recordings ---------------------------------------------------------------------------
    Row("replay-missing", ["replay", "{tmp}/none.jsonl"], "{tmp}/none.jsonl: no such file", 1),
    Row("replay-empty", ["replay", "{tmp}/r.jsonl"], "is empty", 1, files={"r.jsonl": ""}),
    Row("replay-not-a-recording", ["replay", "{tmp}/r.jsonl"], "is not a synfin recording", 1, files={"r.jsonl": "hello\n"}),
    Row("replay-binary-garbage", ["replay", "{tmp}/r.jsonl"], "not UTF-8 text", 1, files={"r.jsonl": b"\x00\xff\xfe\x80 garbage"}),
    Row("replay-truncated", ["replay", "{tmp}/r.jsonl"], "r.jsonl:2: truncated last line", 1, files={"r.jsonl": HEADER + '{"kind":"state_change"'}),
    Row("replay-huge-line", ["replay", "{tmp}/huge.jsonl"], "huge.jsonl:2: line longer than 1048576 bytes", 1, setup=huge_line),
    Row("replay-newer-schema", ["replay", "{tmp}/r.jsonl"], "is a schema 7 recording; this synfin reads schema 1", 1, files={"r.jsonl": HEADER.replace(":1,", ":7,", 1)}),
    Row("replay-wrong-event", ["replay", "{tmp}/r.jsonl"], "r.jsonl:2: missing field(s)", 1, files={"r.jsonl": HEADER + '{"kind":"state_change"}\n'}),
    # -- the environment ----------------------------------------------------------------------
    Row("not-root", ["watch", "--duration", "1"], "loading BPF programs needs root, or CAP_BPF and CAP_PERFMON", 3, wrap=WITHOUT_CAPABILITIES),
    Row("tracefs-not-mounted", ["watch", "--tracefs", "{tmp}", "--duration", "1"], "tracefs is not mounted at {tmp} (fix: mount -t tracefs", 3),
    Row("tracepoint-missing", ["watch", "--tracefs", "{tmp}/tracefs", "--duration", "1"], "tracepoint sock:inet_sock_set_state not found", 3, setup=fake_tracefs(None)),
    Row("tracepoint-unexpected-layout", ["watch", "--tracefs", "{tmp}/tracefs", "--duration", "1"], "lacks field(s) saddr_v6", 3, setup=fake_tracefs("saddr_v6")),
    Row("bcc-missing", ["watch", "--duration", "1"], "bcc's Python module is not importable", 3, env={"PYTHONPATH": "{tmp}/shadow"}, setup=shadow_bcc),
]
# fmt: on


def bpf_programs() -> set[int]:
    listed = subprocess.run(
        ["bpftool", "--json", "prog", "list"], capture_output=True, text=True, check=True
    )
    return {prog["id"] for prog in json.loads(listed.stdout)}


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
    assert bpf_programs() <= before  # nothing of synfin's stays attached


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
    assert bpf_programs() <= before


def test_every_row_is_documented() -> None:
    doc = DOC.read_text()
    for row in ROWS:
        assert f"| `{row.id}` |" in doc, f"docs/bad-input.md has no row {row.id}"
        line = next(line for line in doc.splitlines() if line.startswith(f"| `{row.id}` |"))
        assert line.rstrip().endswith(f"| {row.code} |"), f"{row.id}: documented exit code differs"
