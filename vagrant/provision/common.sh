# shellcheck shell=bash
# Shared by the provisioning scripts (sourced, not run).
#   SYNFIN_DIR            the repository (default /opt/synfin)
#   SYNFIN_PROVISION_ROOT write files under this root instead of / (for dry runs)
#   SYNFIN_PROVISION_DRY_RUN=1  print package installs and service commands instead of running them
set -euo pipefail

SYNFIN_DIR=${SYNFIN_DIR:-/opt/synfin}
ROOT=${SYNFIN_PROVISION_ROOT:-}
DRY_RUN=${SYNFIN_PROVISION_DRY_RUN:-0}

say() { printf 'provision: %s\n' "$*"; }

# Run a command that changes the system (packages, services); only print it in a dry run.
act() {
  if [ "$DRY_RUN" = 1 ]; then
    say "would run: $*"
  else
    "$@"
  fi
}

apt_install() {
  act env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# install_file SOURCE DESTINATION [MODE]: copy a file under $ROOT, creating its directory.
install_file() {
  local mode=${3:-0644}
  install -D -m "$mode" "$1" "$ROOT$2"
}

# write_file DESTINATION [MODE] < content
write_file() {
  local mode=${2:-0644}
  mkdir -p "$(dirname "$ROOT$1")"
  cat >"$ROOT$1"
  chmod "$mode" "$ROOT$1"
}
