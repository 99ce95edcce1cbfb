"""``synfin run``: the exporter daemon's command line and its optional YAML config file."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click
import yaml

from synfin.cli.support import reports_errors, stop_on_signals, tracefs_option
from synfin.exporter.daemon import DEFAULT_LISTEN, Daemon, RunConfig
from synfin.exporter.groundtruth import SCOPES

RUN_CONFIG_KEYS = {
    "listen_address", "web_config_file", "port_labels", "port_label_listening", "max_sockets",
    "ground_truth", "ground_truth_interval", "tracefs_root", "log_level",
}  # fmt: skip


def load_config_file(ctx: click.Context, _param: click.Parameter, path: Path | None) -> Path | None:
    """An optional YAML file whose keys are run's option names (CLI and SYNFIN_* win)."""
    if path is None:
        return None
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise click.BadParameter(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise click.BadParameter(
            f"{path} is not valid YAML: {str(error).splitlines()[0]}"
        ) from None
    if not isinstance(raw, dict):
        raise click.BadParameter(f"{path} is not a YAML mapping of option: value")
    settings = {str(key).replace("-", "_"): value for key, value in raw.items()}
    settings = {
        ("port_labels" if key == "port_label" else key): value for key, value in settings.items()
    }
    unknown = sorted(set(settings) - RUN_CONFIG_KEYS)
    if unknown:
        raise click.BadParameter(f"{path}: unknown setting(s) {', '.join(unknown)}")
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
    help="Sockets followed at once; beyond it the least recently used is evicted (and counted).",
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
        click.echo(
            f"synfin run --check: configuration OK; {attached} hooks attached and detached",
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
