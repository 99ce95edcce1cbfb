#!/usr/bin/env bash
# Set the host up if needed, then start synfin. Arguments go to `synfin`; with none, the main
# job runs. Run as root.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh" >&2
[ "$#" -gt 0 ] || set -- run
exec "$repo/.venv/bin/synfin" "$@"
