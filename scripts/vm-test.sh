#!/usr/bin/env bash
# synfin in QEMU virtual machines on Debian's stock kernels (5.10, 6.1, 6.12): see
# tests/vm/runner.py. Root; the first run of a suite builds its root filesystem (cached).
#   sudo scripts/vm-test.sh                 # Debian 12's 6.1
#   sudo scripts/vm-test.sh --all           # 5.10, 6.1 and 6.12
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
exec /usr/bin/python3 "$repo/tests/vm/runner.py" "$@"
