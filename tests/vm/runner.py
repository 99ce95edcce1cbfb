"""synfin in virtual machines on Debian's stock kernels: build (cached), boot, check, report.

    sudo scripts/vm-test.sh [--suite bookworm] [--all] [--timeout SECONDS] [--keep]

For each suite (bullseye: Linux 5.10, bookworm: 6.1, trixie: 6.12) a Debian root filesystem is
built with debootstrap, with the distribution's own kernel and matching headers, bcc and the
tools synfin's setup installs, and cached under /var/cache/synfin-vm/ (rebuilt when its
package list or this runner's guest configuration changes). The guest boots under QEMU's
software emulation from its own vmlinuz and initrd, with a copy of this checkout on a 9p
share; a systemd unit in the guest runs tests/vm/guest/run-checks.sh, which writes one line
per check to a second serial port and powers off. Each VM is stopped however the run ends,
and a run has a time limit. Prints one line per check; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUEST = Path(__file__).resolve().parent / "guest"
CACHE = Path(os.environ.get("SYNFIN_VM_CACHE", "/var/cache/synfin-vm"))
MIRROR = "http://deb.debian.org/debian"
KERNELS = {"bullseye": "5.10", "bookworm": "6.1", "trixie": "6.12"}
PACKAGES = (
    "linux-image-amd64", "linux-headers-amd64", "initramfs-tools", "kmod", "systemd-sysv",
    "udev", "python3", "python3-bpfcc", "python3-venv", "python3-pip", "bpftool", "iproute2",
    "nftables", "curl", "ca-certificates", "procps",
)  # fmt: skip
HOST_TOOLS = {
    "debootstrap": "debootstrap",
    "qemu-system-x86_64": "qemu-system-x86",
    "mke2fs": "e2fsprogs",
}
IMAGE_SIZE = "4G"


def say(text: str) -> None:
    print(f"vm-test: {text}", file=sys.stderr, flush=True)


def ensure_host_tools() -> None:
    missing = [package for tool, package in HOST_TOOLS.items() if not shutil.which(tool)]
    if missing:
        say(f"installing {' '.join(missing)}")
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip


def fingerprint(suite: str) -> str:
    """What a cached root depends on: the suite, its packages, the guest's configuration."""
    digest = hashlib.sha256(suite.encode())
    digest.update("\n".join(PACKAGES).encode())
    for path in sorted(GUEST.iterdir()):
        if path.name.endswith(".service") or path.name == "configure-root.sh":
            digest.update(path.read_bytes())
    for cert in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")):
        digest.update(cert.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class Machine:
    suite: str
    folder: Path

    @property
    def root(self) -> Path:
        return self.folder / "root"

    @property
    def image(self) -> Path:
        return self.folder / "image.ext4"

    @property
    def ready(self) -> Path:
        return self.folder / "ready"

    def kernel_files(self) -> tuple[Path, Path]:
        vmlinuz = sorted((self.root / "boot").glob("vmlinuz-*"))
        initrd = sorted((self.root / "boot").glob("initrd.img-*"))
        if not vmlinuz or not initrd:
            raise SystemExit(
                f"vm-test: {self.root}/boot has no kernel or initrd: remove {self.folder}"
            )
        return vmlinuz[-1], initrd[-1]


def build(suite: str) -> Machine:
    """The suite's root and disk image, from the cache when its fingerprint matches."""
    machine = Machine(suite, CACHE / f"{suite}-{fingerprint(suite)}")
    if machine.ready.exists():
        say(f"{suite}: cached root {machine.folder}")
        return machine
    for stale in CACHE.glob(f"{suite}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    machine.folder.mkdir(parents=True)
    say(f"{suite}: debootstrap (a few minutes)")
    started = time.monotonic()
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", suite,
         str(machine.root), MIRROR],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    shutil.copy(GUEST / "synfin-vm-test.service", machine.root / "etc/systemd/system/")
    certs = machine.root / "usr/local/share/ca-certificates"
    certs.mkdir(parents=True, exist_ok=True)
    for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(cert, certs)  # the host's network may inspect TLS: the guest shares it
    shutil.copy(GUEST / "configure-root.sh", machine.root / "configure-root.sh")
    subprocess.run(["chroot", str(machine.root), "/bin/sh", "/configure-root.sh"], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    (machine.root / "configure-root.sh").unlink()
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(machine.root), str(machine.image),
                    IMAGE_SIZE], check=True)  # fmt: skip
    machine.ready.write_text(f"built in {time.monotonic() - started:.0f} s\n")
    say(f"{suite}: built in {time.monotonic() - started:.0f} s")
    return machine


def share(folder: Path, checks: str) -> Path:
    """The guest's 9p share: this checkout as git has it (tracked and untracked, not ignored),
    the checks to run, and a folder for the guest's logs."""
    shared = folder / "share"
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True,
    ).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, files):
        source = REPO / name.decode()
        if source.is_file():
            target = shared / "repo" / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (shared / "out").mkdir(parents=True)
    (shared / "checks").write_text(checks + "\n")
    return shared


def boot(machine: Machine, shared: Path, results: Path, timeout: float) -> int:
    """Run the guest until it powers off or the time is up; the VM is stopped either way."""
    vmlinuz, initrd = machine.kernel_files()
    console = shared / "out" / "console.log"
    command = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "2048", "-smp", "2",
        "-kernel", str(vmlinuz), "-initrd", str(initrd),
        "-append", "root=/dev/vda rw console=ttyS0 systemd.unit=multi-user.target",
        "-drive", f"file={machine.image},format=raw,if=virtio", "-snapshot",
        "-virtfs", f"local,path={shared},mount_tag=host0,security_model=none,id=host0",
        "-nic", "user,model=virtio-net-pci",
        "-display", "none", "-monitor", "none", "-no-reboot",
        "-serial", f"file:{console}", "-serial", f"file:{results}",
    ]  # fmt: skip
    say(f"{machine.suite}: booting Linux {KERNELS[machine.suite]} under software emulation")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                return process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            crash = panic_of(console.read_text(errors="replace") if console.exists() else "")
            if crash:
                say(f"{machine.suite}: the guest kernel panicked ({crash}): stopping the VM")
                return PANICKED
            if time.monotonic() > deadline:
                say(f"{machine.suite}: no power-off within {timeout:.0f} s: stopping the VM")
                return -1
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


PANICKED = -2


def panic_of(console: str) -> str:
    """The first Oops line of a guest kernel that panicked, or "" while it has not."""
    if "Kernel panic - not syncing" not in console:
        return ""
    oops = [line for line in console.splitlines() if "Oops:" in line or " RIP: " in line]
    return " ".join(line.split("] ", 1)[-1].strip() for line in oops[:2]) or "no Oops line"


def why_it_failed(log: str, lines: int = 8) -> list[str]:
    """What a failed check's log says went wrong: pytest's failure lines ("E ...", "FAILED
    ...") when there are some, else the log's last lines. CI keeps only what the host prints,
    so without these a flake in a VM leaves no trace of its cause."""
    text = log.splitlines()
    failures = [line for line in text if line.startswith(("E ", "FAILED "))]
    return failures[:lines] if failures else text[-lines:]


def report(suite: str, results: Path, logs: Path | None = None) -> bool:
    """One line per check the guest reported, and for a failed one the lines of its log (in
    ``logs``) that say why; False if one failed or none came."""
    lines = [line.split("\t") for line in results.read_text(errors="replace").splitlines()]
    checks = [line for line in lines if len(line) >= 2]
    for name, status, *detail in checks:
        print(f"{suite:<9} {KERNELS[suite]:<5} {name:<28} {status:<5} {' '.join(detail)}")
        log = logs / f"{name}.log" if logs else None
        if status == "FAIL" and log and log.is_file():
            for line in why_it_failed(log.read_text(errors="replace")):
                print(f"{'':<16}| {line[:200]}")
    if not checks:
        print(f"{suite:<9} {KERNELS[suite]:<5} {'boot':<28} FAIL  the guest reported nothing")
    elif not any(name == "finished" for name, *_ in checks):
        # Stopped half-way (time limit, a guest kernel panic): the checks not reported failed.
        print(f"{suite:<9} {KERNELS[suite]:<5} {'finished':<28} FAIL  the guest stopped early")
        return False
    return bool(checks) and all(status == "ok" for _, status, *_ in checks)


def run_vm(
    machine: Machine, checks: str, timeout: float, keep: Path | None, boots: int = 2
) -> bool:
    """Boot, check, report. A guest kernel that panics is booted once more: under software
    emulation, live patching of kernel code (a tracepoint being enabled) has crashed a 6.12
    guest once (Oops: int3 in enqueue_timer), which says nothing about synfin."""
    with tempfile.TemporaryDirectory(prefix=f"synfin-vm-{machine.suite}-") as folder:
        shared = share(Path(folder), checks)
        results = Path(folder) / "results.txt"
        results.touch()
        started = time.monotonic()
        ended = boot(machine, shared, results, timeout)
        say(f"{machine.suite}: the VM ({checks}) ran {time.monotonic() - started:.0f} s")
        if ended == PANICKED and boots > 1:
            say(f"{machine.suite}: booting it again, once")
            return run_vm(machine, checks, timeout, keep, boots - 1)
        passed = report(machine.suite, results, shared / "out")
        if keep:
            target = keep / f"{machine.suite}-{checks.replace(',', '-')}"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(shared / "out", target)
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite",
        action="append",
        choices=sorted(KERNELS),
        help="a Debian suite to test (repeatable; default bookworm)",
    )
    parser.add_argument("--all", action="store_true", help="every suite: 5.10, 6.1 and 6.12")
    parser.add_argument("--checks", default="setup,doctor,run-check,tests",
                        help="what the guest runs (comma-separated)")  # fmt: skip
    parser.add_argument("--lab", action="store_true",
                        help="also the lab VM: vagrant/provision/*.sh for real in Debian 12, "
                        "then each service checked (systemd, Prometheus' API)")  # fmt: skip
    parser.add_argument("--only-lab", action="store_true", help="the lab VM alone")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per VM")
    parser.add_argument("--keep", type=Path, help="copy each guest's logs into this folder")
    args = parser.parse_args()
    if os.geteuid() != 0:
        say("run as root (debootstrap, chroot and the guest image need it)")
        return 2
    # A signal ends the run through the finally blocks: the VM is stopped, its folder removed.
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, lambda number, _frame: sys.exit(128 + number))
    suites = sorted(KERNELS) if args.all else (args.suite or ["bookworm"])
    ensure_host_tools()
    runs = [] if args.only_lab else [(suite, args.checks) for suite in suites]
    if args.lab or args.only_lab:
        runs.append(("bookworm", "lab"))
    passed = True
    for suite, checks in runs:
        passed = run_vm(build(suite), checks, args.timeout, args.keep) and passed
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
