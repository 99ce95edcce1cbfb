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
exec .venv/bin/pytest "$@"
