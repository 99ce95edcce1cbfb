"""The lab VM's definition and provisioning, checked without booting a VM (vagrant/README.md)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from synfin.cli.main import main
from synfin.lab.runner import NAMES
from tests.paths import REPO

VAGRANT = REPO / "vagrant"
SCRIPTS = sorted((VAGRANT / "provision").glob("*.sh"))


def test_vagrantfile_validates() -> None:
    result = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=VAGRANT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "validated successfully" in result.stdout, (
        result.stdout + result.stderr
    )


def test_provisioning_scripts_pass_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", "-x", *map(str, SCRIPTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("root")
    env = os.environ | {
        "SYNFIN_DIR": str(REPO),
        "SYNFIN_PROVISION_ROOT": str(root),
        "SYNFIN_PROVISION_DRY_RUN": "1",
    }
    said = ""
    for step in ("synfin", "prometheus", "grafana", "lab"):
        result = subprocess.run(
            ["bash", str(VAGRANT / "provision" / f"{step}.sh")],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        said += result.stdout
    return root, said


def test_dry_run_installs_nothing_but_says_what_it_would(provisioned: tuple[Path, str]) -> None:
    _root, said = provisioned
    assert f"would run: bash {REPO}/scripts/setup.sh" in said
    apt = "apt-get install -y -q --no-install-recommends"
    assert f"would run: env DEBIAN_FRONTEND=noninteractive {apt} prometheus" in said
    assert "would run: systemctl enable --now synfin.service" in said
    assert "would run: systemctl enable --now synfin-lab.service" in said


def test_synfin_files(provisioned: tuple[Path, str]) -> None:
    root, _ = provisioned
    unit = root / "etc/systemd/system/synfin.service"
    assert unit.read_text() == (REPO / "deploy" / "synfin.service").read_text()
    settings = yaml.safe_load((root / "etc/synfin/synfin.yml").read_text())
    assert settings == {
        "listen_address": "0.0.0.0:9977", "port_label_listening": True,
        "ground_truth": "all", "ground_truth_interval": 15,
    }  # fmt: skip


@pytest.mark.bpf
def test_synfin_accepts_the_provisioned_settings(provisioned: tuple[Path, str]) -> None:
    root, _ = provisioned
    result = CliRunner().invoke(
        main, ["run", "--config", str(root / "etc/synfin/synfin.yml"), "--check"]
    )
    assert result.exit_code == 0, result.output


def test_prometheus_files(provisioned: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = provisioned
    config = root / "etc/prometheus/prometheus.yml"
    assert (root / "etc/prometheus/synfin.rules.yml").read_text() == (
        REPO / "dashboards/rules/synfin.rules.yml"
    ).read_text()
    relocated = tmp_path / "prometheus.yml"
    relocated.write_text(config.read_text().replace("/etc/prometheus/", f"{root}/etc/prometheus/"))
    result = subprocess.run(
        ["promtool", "check", "config", str(relocated)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "localhost:9977" in config.read_text()


def test_grafana_files(provisioned: tuple[Path, str]) -> None:
    root, _ = provisioned
    provisioning = root / "etc/grafana/provisioning"
    datasource = yaml.safe_load((provisioning / "datasources/synfin-prometheus.yml").read_text())
    assert datasource["datasources"][0]["type"] == "prometheus"
    provider = yaml.safe_load((provisioning / "dashboards/synfin.yml").read_text())
    path = Path(provider["providers"][0]["options"]["path"])
    installed = sorted(p.name for p in (root / path.relative_to("/")).glob("*.json"))
    assert installed == sorted(p.name for p in (REPO / "dashboards/grafana").glob("*.json"))
    assert "apt.grafana.com" in (root / "etc/apt/sources.list.d/grafana.list").read_text()


def test_lab_service_plays_real_scenarios(provisioned: tuple[Path, str]) -> None:
    root, _ = provisioned
    unit = (root / "etc/systemd/system/synfin-lab.service").read_text()
    command = shlex.split(
        next(line for line in unit.splitlines() if line.startswith("ExecStart=")).split("=", 1)[1]
    )
    assert command[:2] == [f"{REPO}/.venv/bin/synfin", "lab"]
    scenarios = [
        word
        for word in command[2:]
        if not word.startswith("--") and not word.replace(".", "").isdigit()
    ]
    assert scenarios and set(scenarios) <= set(NAMES)
    assert Path(sys.executable).parent.joinpath("synfin").exists()
