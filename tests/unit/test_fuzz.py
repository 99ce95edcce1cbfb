"""Every input surface fuzzed with arbitrary bytes, for a bounded number of examples: the config
file, the web config (and the certificate, key and CA files it names), SYNFIN_* variables,
recordings, every command-line option, and requests to the served app. Any input gives a
value or the documented one-line error, never anything else. (The HTTP server itself is fuzzed
over real sockets in tests/integration/test_http_fuzz.py.)"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import bcrypt
import click
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, make_wsgi_app

from synfin.cli.main import main
from synfin.cli.run import load_config_file, run
from synfin.errors import SynfinError
from synfin.exporter.web import WebConfigError, build_app, load_web_config, parse_listen_address
from synfin.exporter.web_config import HEADERS, WebConfig
from synfin.exporter.web_tls import CIPHER_SUITES, TLS13_SUITES, TOOLKIT_CLIENT_AUTH, VERSIONS
from synfin.records.events import DecodeError, Event, from_record
from synfin.records.recording import Reader, RecordingError

BOUNDED = settings(
    max_examples=300,
    deadline=None,
    database=None,  # nothing written beside the tests: they run read-only in CI too
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=6)
    ),
    max_leaves=20,
)
FIELDS = [
    "kind", "ts_ns", "skaddr", "since_ns", "start_ns", "aux", "cgroup_id", "pid", "owner_pid",
    "netns", "facts", "family", "sport", "dport", "flags", "saddr", "daddr", "comm", "oldstate",
    "newstate", "detail", "syn_retrans", "reason",
]  # fmt: skip
HEADER = (
    '{"synfin_recording":1,"kernel":"x","clock_offset_ns":0,"capabilities":{},"reset_reasons":{}}\n'
)
# What a file or a command line can hold: any bytes (a NUL ends a C string, so none there).
ARGUMENT_BYTES = st.binary(max_size=60).map(lambda raw: raw.replace(b"\0", b""))
ARGUMENT = ARGUMENT_BYTES.map(os.fsdecode) | st.text(max_size=30).map(
    lambda text: text.replace("\0", "")
)


def one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message, repr(message)


# -- recordings ------------------------------------------------------------------------------


@BOUNDED
@given(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=len(FIELDS)) | JSON)
def test_event_records(record: object) -> None:
    with contextlib.suppress(DecodeError):
        assert isinstance(from_record(record), Event)  # type: ignore[arg-type]


RECORDING_LINES = st.lists(
    st.binary(max_size=200)
    | JSON.map(json.dumps).map(str.encode)
    | st.sampled_from([b"[" * 3000, b"Infinity", b"-Infinity", b"NaN", b"1" * 5000]),
    max_size=5,
)


@BOUNDED
@given(
    st.binary(max_size=2000)
    | st.text(max_size=2000).map(lambda text: (HEADER + text).encode())
    | RECORDING_LINES.map(b"\n".join)
    | RECORDING_LINES.map(lambda lines: HEADER.encode() + b"\n".join(lines))
    | JSON.map(lambda v: json.dumps({"synfin_recording": 1, "clock_offset_ns": v}).encode())
)
def test_recordings(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(content)
    try:
        with Reader(path) as reader:
            for event in reader:
                assert isinstance(event, Event)
    except RecordingError as error:
        one_line(str(error))


# -- the web config and the files it names ----------------------------------------------------


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=synfin", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, check=True,
    )  # fmt: skip
    return cert, key


def tls_section(cert: str, key: str) -> st.SearchStrategy[dict[str, object]]:
    """tls_server_config with a real certificate most of the time, so the checks past it run."""
    word = st.sampled_from([*VERSIONS, *CIPHER_SUITES, *TLS13_SUITES, *TOOLKIT_CLIENT_AUTH])
    value = JSON | word | st.lists(word, max_size=3)
    return st.fixed_dictionaries(
        {"cert_file": st.sampled_from([cert, "none.crt"]), "key_file": st.sampled_from([key])},
        optional={
            name: value
            for name in [
                "client_auth_type", "client_ca_file", "client_ca", "client_allowed_sans",
                "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
                "curve_preferences", "cert", "key", "unknown_key",
            ]
        },
    )  # fmt: skip


def web_documents(cert: str, key: str) -> st.SearchStrategy[dict[str, object]]:
    headers = st.dictionaries(st.sampled_from([*HEADERS, "Server"]), JSON | st.text(), max_size=3)
    return st.fixed_dictionaries(
        {},
        optional={
            "tls_server_config": tls_section(cert, key) | JSON,
            "http_server_config": st.fixed_dictionaries({}, optional={"headers": headers})
            | st.dictionaries(st.sampled_from(["http2", "headers", "h2"]), JSON),
            "basic_auth_users": st.dictionaries(st.text(max_size=8), JSON, max_size=2),
            "rate_limit": st.dictionaries(st.sampled_from(["interval", "burst"]), JSON | st.text()),
        },
    )


@BOUNDED
@given(data=st.data())
def test_web_configs(tmp_path: Path, key_pair: tuple[Path, Path], data: st.DataObject) -> None:
    content = data.draw(
        st.binary(max_size=500)
        | st.text(max_size=500).map(str.encode)
        | JSON.map(json.dumps).map(str.encode)
        | web_documents(*map(str, key_pair)).map(yaml.safe_dump).map(str.encode)
    )
    path = tmp_path / "web.yml"
    path.write_bytes(content)
    try:
        assert isinstance(load_web_config(path), WebConfig)
    except WebConfigError as error:
        one_line(str(error))


@BOUNDED
@given(
    which=st.sampled_from(["cert_file", "key_file", "client_ca_file"]),
    content=st.binary(max_size=3000) | st.sampled_from([b"", b"-----BEGIN CERTIFICATE-----\n"]),
)
def test_files_a_web_config_names(
    tmp_path: Path, key_pair: tuple[Path, Path], which: str, content: bytes
) -> None:
    files = {"cert_file": key_pair[0], "key_file": key_pair[1], "client_ca_file": key_pair[0]}
    files[which] = tmp_path / "fuzzed.pem"
    files[which].write_bytes(content)
    path = tmp_path / "web.yml"
    path.write_text(
        "tls_server_config:\n"
        + "".join(f"  {name}: {file}\n" for name, file in files.items())
        + "  client_auth_type: RequireAndVerifyClientCert\n"
    )
    with pytest.raises(WebConfigError) as raised:
        load_web_config(path)
    one_line(str(raised.value))


# -- the config file, options and variables ----------------------------------------------------

RUN_SETTING = st.sampled_from(
    ["listen_address", "web_config_file", "port_label", "port_labels", "port_label_listening",
     "max_sockets", "ground_truth", "ground_truth_interval", "tracefs_root", "log_level",
     "listen-address", "unknown"]
)  # fmt: skip


@BOUNDED
@given(
    st.binary(max_size=500)
    | st.text(max_size=500).map(str.encode)
    | JSON.map(json.dumps).map(str.encode)
    | st.dictionaries(RUN_SETTING, JSON | ARGUMENT, max_size=4).map(yaml.safe_dump).map(str.encode)
)
def test_run_config_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "synfin.yml"
    path.write_bytes(content)
    context = click.Context(run)
    try:
        load_config_file(context, click.Option(["--config"]), path)
    except click.ClickException as error:
        one_line(error.format_message())


def value_taking(command: click.Command) -> list[click.Parameter]:
    return [
        param
        for param in command.params
        if isinstance(param, click.Argument)
        or (isinstance(param, click.Option) and not param.is_flag and not param.count)
    ]


PARAMETERS = [(name, param) for name, cmd in main.commands.items() for param in value_taking(cmd)]


def parse(name: str, args: list[str]) -> None:
    """The command line as `synfin NAME ARGS...` reads it (the group, its error wording,
    every callback), with the command's own work left out."""
    with mock.patch.object(main.commands[name], "callback", lambda **_: None):
        main.main([name, *args], prog_name="synfin", standalone_mode=False)


@BOUNDED
@given(
    parameter=st.sampled_from(PARAMETERS),
    value=ARGUMENT,
    more=st.lists(ARGUMENT, max_size=3),
)
def test_every_option_takes_any_bytes(
    parameter: tuple[str, click.Parameter], value: str, more: list[str]
) -> None:
    name, param = parameter
    flag = [param.opts[-1]] if isinstance(param, click.Option) else []
    try:
        parse(name, [*flag, value, *more])
    except click.ClickException as error:
        one_line(error.format_message())


ENVIRONMENT = [
    (name, param, param.envvar or f"SYNFIN_{name.upper()}_{(param.name or '').upper()}")
    for name, param in PARAMETERS
    if isinstance(param, click.Option)
]


@BOUNDED
@given(variable=st.sampled_from(ENVIRONMENT), value=ARGUMENT_BYTES.map(os.fsdecode))
def test_every_variable_takes_any_bytes(
    variable: tuple[str, click.Parameter, str | list[str]], value: str
) -> None:
    name, _param, envvar = variable
    names = [envvar] if isinstance(envvar, str) else envvar
    with mock.patch.dict(os.environ, dict.fromkeys(names, value)):
        try:
            parse(name, [])
        except click.ClickException as error:
            one_line(error.format_message())


@BOUNDED
@given(ARGUMENT)
def test_listen_addresses(text: str) -> None:
    try:
        host, port = parse_listen_address(text)
    except SynfinError as error:
        one_line(str(error))
        return
    assert 0 < port < 65536
    assert host.isascii()  # what socket.bind can take without a UnicodeError


@BOUNDED
@given(
    content=st.binary(max_size=1500)
    | RECORDING_LINES.map(lambda x: HEADER.encode() + b"\n".join(x))
)
def test_replay_end_to_end(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["replay", str(path)])
    assert result.exit_code in (0, 1), result.output
    assert "internal error" not in result.output, result.output


# -- requests to the served app ----------------------------------------------------------------

USERS = {"alice": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4))}
GOOD = "Basic " + base64.b64encode(b"alice:s3cret").decode()
HEADER_VALUE = st.binary(max_size=120).map(lambda raw: raw.decode("iso-8859-1"))


def metrics_app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"synfin_up 1\n"]


@BOUNDED
@given(
    path=st.sampled_from(["/metrics", "/", "/favicon.ico"]) | HEADER_VALUE,
    method=st.sampled_from(["GET", "POST", "HEAD", "OPTIONS"]) | HEADER_VALUE,
    authorization=st.just(GOOD)
    | HEADER_VALUE
    | st.binary(max_size=120).map(lambda raw: "Basic " + base64.b64encode(raw).decode())
    | HEADER_VALUE.map(lambda text: "Basic " + text),
    accept=HEADER_VALUE
    | st.sampled_from(["text/plain;version=", "application/openmetrics-text; version="]).flatmap(
        lambda prefix: HEADER_VALUE.map(lambda text: prefix + text)
    ),
)
def test_requests_to_the_app(path: str, method: str, authorization: str, accept: str) -> None:
    app = build_app(
        make_wsgi_app(CollectorRegistry()),
        WebConfig(users=USERS, headers=(("X-Frame-Options", "deny"),)),
    )
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    environ = {
        "PATH_INFO": path,
        "REQUEST_METHOD": method,
        "QUERY_STRING": path,
        "HTTP_AUTHORIZATION": authorization,
        "HTTP_ACCEPT": accept,
    }
    body = b"".join(app(environ, lambda status, headers, *_: seen.append((status, headers))))
    status, headers = seen[-1]
    assert status.split()[0] in ("200", "401", "404", "405"), (status, body)
    assert ("X-Frame-Options", "deny") in headers
    for _name, value in headers:
        assert "\n" not in value and "\r" not in value
