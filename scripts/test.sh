#!/usr/bin/env bash
# Set the host up if needed (with the test tooling, and synfin installed editable so the tests
# exercise the working tree), then lint and run the whole test suite.
# Run as root: most tests load BPF programs and create network namespaces. Arguments go to
# pytest.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SYNFIN_SETUP_EXTRAS="test" bash "$repo/scripts/setup.sh"
cd "$repo"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Integration tests drive real timers (retransmissions, TIME-WAIT kills) on a shared 2-core
# machine: a test that fails is run up to twice more, and the summary says which were rerun.
.venv/bin/pytest --reruns 2 --reruns-delay 1 "$@"
# The whole suite (no arguments, as CI runs it) goes on in QEMU: synfin on Debian 12's stock
# kernel, and the lab VM provisioned for real (13 minutes with their roots cached; every kernel with
# scripts/vm-test.sh --all). SYNFIN_SKIP_VMS=1 stops here.
if [ $# -eq 0 ] && [ "${SYNFIN_SKIP_VMS:-0}" != 1 ]; then
  bash "$repo/scripts/vm-test.sh" --lab
fi
