"""``synfin run``: the exporter daemon's command line and its optional YAML config file."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from synfin.cli.support import BadInput, reports_errors, stop_on_signals, tracefs_option
from synfin.errors import SynfinError
from synfin.exporter.daemon import DEFAULT_LISTEN, Daemon, RunConfig
from synfin.exporter.groundtruth import SCOPES
from synfin.exporter.yaml_file import YamlDocument, one_line, parse_yaml, read_bounded, shown
from synfin.kernel import capabilities
from synfin.kernel.state_probe import AUTO, TIERS

RUN_CONFIG_KEYS = {
    "listen_address", "web_config_file", "port_labels", "port_label_listening", "max_sockets",
    "ground_truth", "ground_truth_interval", "tracefs_root", "log_level", "probe_tier",
}  # fmt: skip


def _settings(document: YamlDocument, path: Path) -> list[tuple[str, str, object]]:
    """(option name, key as written, value) for each setting of the file."""
    raw = document.data if document.data is not None else {}
    if not isinstance(raw, dict):
        raise BadInput(
            f"config file {path} is not a YAML mapping of option: value",
            "write one setting per line, for example max_sockets: 65536",
        )
    settings = []
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        name = "port_labels" if name == "port_label" else name
        if not isinstance(key, str) or name not in RUN_CONFIG_KEYS:
            raise BadInput(
                f"config file {path}{document.where(str(key))}: unknown setting {shown(key)}",
                f"use one of {', '.join(sorted(RUN_CONFIG_KEYS - {'port_labels'}))}, port_label",
            )
        settings.append((name, key, value))
    return settings


def _checked(ctx: click.Context, where: str, name: str, value: object) -> object:
    """The value as the option takes it; a wrong one is named with the file and line here, not
    later as if a flag were wrong."""
    param = next(p for p in ctx.command.params if p.name == name)
    if param.multiple and not isinstance(value, list):
        value = [value]  # `port_label: 80` as well as `port_label: [80, 443]`
    try:
        param.type_cast_value(ctx, value)
    except click.BadParameter as error:
        raise BadInput(f"{where}: {error.message}", "see synfin run --help") from None
    except ValueError as error:  # a NUL byte in a path
        raise BadInput(f"{where}: {one_line(str(error))}", "see synfin run --help") from None
    except (TypeError, AttributeError):  # a list or a mapping where a word belongs
        raise BadInput(
            f"{where}: {shown(value)} is not a {param.type.name}", "see synfin run --help"
        ) from None
    return value


def load_config_file(ctx: click.Context, _param: click.Parameter, path: Path | None) -> Path | None:
    """An optional YAML file whose keys are run's option names (CLI and SYNFIN_* win)."""
    if path is None:
        return None
    try:
        data = read_bounded(path, "config file", SynfinError)
        document = parse_yaml(data, path, "config file", SynfinError)
    except OSError as error:
        raise click.BadParameter(f"cannot read {path}: {error.strerror}") from None
    except SynfinError as error:
        raise BadInput(error.problem, error.fix) from None
    settings = {
        name: _checked(ctx, f"config file {path}{document.where(key)}: {key}", name, value)
        for name, key, value in _settings(document, path)
        if value is not None  # an empty setting leaves the option's default
    }
    ctx.default_map = {**(ctx.default_map or {}), **settings}
    return path


@click.command("run")
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    callback=load_config_file,
    is_eager=True,
    expose_value=False,
    envvar="SYNFIN_CONFIG",
    help="YAML file of settings named like these options (flags and SYNFIN_* variables win).",
)
@click.option(
    "--listen-address",
    default=DEFAULT_LISTEN,
    show_default=True,
    envvar="SYNFIN_LISTEN_ADDRESS",
    help="Serve /metrics here (HOST:PORT).",
)
@click.option(
    "--web-config-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="SYNFIN_WEB_CONFIG_FILE",
    help="TLS and basic auth, in the Prometheus exporter-toolkit format.",
)
@click.option(
    "--port-label",
    "port_labels",
    type=click.IntRange(1, 65535),
    multiple=True,
    envvar="SYNFIN_PORT_LABEL",
    help="Give this port its own `port` label on connects, accepts and closes (repeatable).",
)
@click.option(
    "--port-label-listening",
    is_flag=True,
    envvar="SYNFIN_PORT_LABEL_LISTENING",
    help="Label every port a local listener accepts on (bounded by the listeners you run).",
)
@click.option(
    "--max-sockets",
    type=click.IntRange(64, 1 << 24),
    default=65536,
    show_default=True,
    envvar="SYNFIN_MAX_SOCKETS",
    help="Sockets followed at once. Timers tier: beyond it the least recently used is evicted; "
    "lean tier: a table of twice as many slots, a socket that finds none free is not followed. "
    "Both are counted (synfin_bpf_map_evictions_total).",
)
@click.option(
    "--probe-tier",
    type=click.Choice(TIERS),
    default=AUTO,
    show_default=True,
    envvar="SYNFIN_PROBE_TIER",
    help="lean: tp_btf programs with per-socket storage (Linux >= 5.11, the cheapest); timers: "
    "the generic timer and softirq hooks (any kernel, about a fifth of a busy host's "
    "connection rate); auto: lean where this kernel allows it. `synfin doctor` says which.",
)
@click.option(
    "--ground-truth",
    type=click.Choice(SCOPES),
    default="all",
    show_default=True,
    envvar="SYNFIN_GROUND_TRUTH",
    help="Export the kernel's own socket states and Tcp counters: for all network namespaces, "
    "the host's only, or not at all.",
)
@click.option(
    "--ground-truth-interval",
    type=click.FloatRange(min=1),
    default=15.0,
    show_default=True,
    envvar="SYNFIN_GROUND_TRUTH_INTERVAL",
    help="Seconds between ground-truth samples.",
)
@tracefs_option
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    envvar="SYNFIN_LOG_LEVEL",
)
@click.option(
    "--check",
    is_flag=True,
    help="Check the configuration, attach and detach the probes, then exit.",
)
@reports_errors
def run(check: bool, log_level: str, **settings: object) -> None:
    """Export TCP handshake and teardown metrics for Prometheus (the daemon).

    Runs until SIGTERM or SIGINT, then detaches everything and exits 0.
    """
    logging.basicConfig(level=log_level.upper(), format="%(message)s", stream=sys.stderr)
    config = RunConfig(**settings)  # type: ignore[arg-type]
    daemon = Daemon(config)
    if check:
        probe = daemon.attach()
        attached = sum(probe.attached().values())
        probe.close()
        for lost in probe.features.capabilities:
            if not lost.available:
                click.echo(
                    f"synfin run --check: without {lost.name}: {lost.fallback} ({lost.reason})",
                    err=True,
                )
        if config.drop_privileges and capabilities.bounding_set_cut_off():
            click.echo(f"synfin run --check: {capabilities.without('CAP_SETPCAP')}", err=True)
        click.echo(
            f"synfin run --check: configuration OK; {probe.tier} tier, {attached} hooks attached "
            "and detached",
            err=True,
        )
        return
    with stop_on_signals() as stopping:
        try:
            daemon.start()
            while not stopping():
                time.sleep(0.1)
        finally:
            daemon.stop()
    click.echo("synfin run: stopped, probes detached", err=True)
