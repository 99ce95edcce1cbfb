#!/usr/bin/env bash
# Set the host up if needed, then start synfin. Arguments go to `synfin`; with none, the main
# job runs. Run as root. synfin runs as a user would have it: a regular (not editable) install
# of this checkout in .venv, rebuilt when its source changes; SYNFIN_SETUP_EXTRAS=test keeps a
# developer's editable install instead.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh" >&2
[ "$#" -gt 0 ] || set -- run
exec "$repo/.venv/bin/synfin" "$@"
