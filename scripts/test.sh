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
exec .venv/bin/pytest --reruns 2 --reruns-delay 1 "$@"
