"""synfin as a user gets it: a wheel built from this checkout, installed (not editable) into a
fresh venv and run from elsewhere. The other tests run an editable install, which reads probes/
in place and so cannot notice a probe file that the wheel leaves out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.paths import REPO

pytestmark = pytest.mark.bpf

# Generous bounds: a stuck pip (network) or a wedged bcc compile fails the test, never hangs it.
BUILD_TIMEOUT = 180
VENV_TIMEOUT = 120
INSTALL_TIMEOUT = 300
RUN_TIMEOUT = 120

# Never part of a build; copying them would only cost time (or, for build/, ship stale files).
SCRATCH = {".git", ".venv", "build", "__pycache__", ".hypothesis", ".ruff_cache", ".pytest_cache"}

NAMED_PROBE_FILES = {
    "synfin/probes/tcp_states.c",
    "synfin/probes/synfin_events.h",
    "synfin/probes/tcp_segments.c",
    "synfin/probes/synfin_segments.h",
}


def run(command: list[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def git_files(*options: str) -> list[str] | None:
    """Paths git lists in the checkout, or None when this is not a git checkout."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return None
    result = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", *options],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        return None
    return [path for path in result.stdout.split("\0") if path]


def source_files() -> list[str]:
    """What a build of the checkout sees: tracked files and new ones git does not ignore."""
    listed = git_files("--cached", "--others", "--exclude-standard")
    if listed is None:
        listed = [
            str(path.relative_to(REPO))
            for path in REPO.rglob("*")
            if path.is_file()
            and not SCRATCH.intersection(path.relative_to(REPO).parts)
            and not any(part.endswith(".egg-info") for part in path.relative_to(REPO).parts)
        ]
    # A tracked file deleted in the working tree is still listed by git.
    return [path for path in listed if (REPO / path).is_file()]


def expected_probe_files() -> set[str]:
    """Where every probe file must land in the wheel: all that git tracks under probes/, and
    every .c and .h there, new ones included."""
    tracked = git_files("--", "probes") or []
    sources = {path for path in tracked if (REPO / path).is_file()}
    sources |= {
        str(path.relative_to(REPO))
        for suffix in ("*.c", "*.h")
        for path in (REPO / "probes").rglob(suffix)
    }
    return {"synfin/" + path for path in sources} | NAMED_PROBE_FILES


def clean_env(venv: Path) -> dict[str, str]:
    """The caller's environment without anything that points Python or synfin elsewhere."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "SYNFIN_")) and key not in {"VIRTUAL_ENV", "PATH"}
    }
    env["PATH"] = f"{venv / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env["PYTHONNOUSERSITE"] = "1"  # a venv with system site-packages still reads ~/.local
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheel")


@pytest.fixture(scope="module")
def wheel(workdir: Path) -> Path:
    # Built from a copy: setuptools builds in <source>/build and never prunes it, so building
    # in the checkout could ship a deleted file, and would race other builds there.
    source = workdir / "source"
    for path in source_files():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, source / path)
    dist = workdir / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        BUILD_TIMEOUT,
        cwd=workdir,
    )
    (built,) = dist.glob("synfin-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(workdir: Path, wheel: Path) -> Path:
    venv = workdir / "venv"
    env = clean_env(venv)
    run(
        ["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
        VENV_TIMEOUT,
        cwd=workdir,
        env=env,
    )
    run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        INSTALL_TIMEOUT,
        cwd=workdir,
        env=env,
    )
    return venv


def test_the_wheel_ships_every_probe_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = sorted(expected_probe_files() - names)
    assert not missing, f"{wheel.name} lacks {missing}"


def test_synfin_imports_from_the_install_not_the_checkout(workdir: Path, venv: Path) -> None:
    where = run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import json, sysconfig, synfin, synfin.probes; print(json.dumps(["
            "sysconfig.get_paths()['purelib'], synfin.__file__, str(synfin.probes.DIRECTORY)]))",
        ],
        RUN_TIMEOUT,
        cwd=workdir,
        env=clean_env(venv),
    )
    site_packages, module, probes = (Path(path).resolve() for path in json.loads(where.stdout))
    assert site_packages.is_relative_to(venv.resolve())
    assert module == site_packages / "synfin" / "__init__.py"
    assert probes == site_packages / "synfin" / "probes"
    assert not module.is_relative_to(REPO)
    installed = {str(path.relative_to(site_packages)) for path in probes.rglob("*")}
    assert not expected_probe_files() - installed


def test_doctor_passes_from_the_install(workdir: Path, venv: Path) -> None:
    result = run(
        [str(venv / "bin" / "synfin"), "doctor"], RUN_TIMEOUT, cwd=workdir, env=clean_env(venv)
    )
    lines = result.stdout.splitlines()
    assert any(line.startswith("[ ok ] state probe: tcp_states.c compiled") for line in lines)
    assert not any(line.startswith("[FAIL]") for line in lines), result.stdout
    assert lines[-1] == "synfin can run here."


def test_run_check_attaches_from_the_install(workdir: Path, venv: Path) -> None:
    result = run(
        [str(venv / "bin" / "synfin"), "run", "--check"],
        RUN_TIMEOUT,
        cwd=workdir,
        env=clean_env(venv),
    )
    said = re.search(
        r"configuration OK; \w+ tier, (\d+) hooks attached and detached", result.stderr
    )
    assert said, result.stderr
    assert int(said.group(1)) > 0
