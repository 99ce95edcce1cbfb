"""What every benchmark needs of the process it watches: starting `synfin run`, its memory."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYNFIN = str(ROOT / ".venv" / "bin" / "synfin")


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of /proc/PID/status in MB: VmRSS now, VmHWM the peak so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_synfin_run(metrics_port: int, *flags: str) -> subprocess.Popen[bytes]:
    """`synfin run` on 127.0.0.1:PORT without ground truth, returned once its probes attach."""
    daemon = subprocess.Popen(
        [SYNFIN, "run", f"--listen-address=127.0.0.1:{metrics_port}", "--ground-truth=off",
         *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert daemon.stderr is not None
    daemon.stderr.readline()  # "serving ...": printed once the probes are attached
    return daemon
