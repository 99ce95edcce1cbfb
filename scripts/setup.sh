#!/usr/bin/env bash
# Idempotent host setup for synfin, run as root on Debian 12 / Ubuntu 22.04+:
#   - bcc from the distribution (its Python module is only visible to /usr/bin/python3)
#   - kernel headers for bcc's compiler (exact package, or the distribution default + links)
#   - tracefs mounted
#   - .venv/ built from /usr/bin/python3 with --system-site-packages, synfin installed into it:
#     as a user gets it (a regular install of this checkout), or, with SYNFIN_SETUP_EXTRAS=test,
#     editable with the test tooling, so the tests run the working tree
# Re-running it is cheap: each step checks before it acts.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
kernel=$(uname -r)
extras="${SYNFIN_SETUP_EXTRAS:-}"   # "test" adds the test tooling to the venv
mode=regular
[ "$extras" = test ] && mode=editable

say() { printf 'synfin-setup: %s\n' "$*"; }
warn() { printf 'synfin-setup: WARNING: %s\n' "$*" >&2; }
die() { printf 'synfin-setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0): installing packages and mounting tracefs need it"
command -v apt-get >/dev/null || die "apt-get not found: this setup supports Debian and Ubuntu; install bcc (python3-bpfcc) and kernel headers by hand"
# bcc's Python module belongs to the distribution's python3, so synfin runs on that Python:
# it must be 3.10 or newer (Debian 11 has 3.9; Debian 12 and Ubuntu 22.04 are the oldest that work).
/usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  die "synfin needs Python >= 3.10 and bcc's Python module for it; this system's python3 is $(/usr/bin/python3 -c 'import platform; print(platform.python_version())') (use Debian 12, Ubuntu 22.04 or newer)"

# Packages synfin needs at run time; the tests add a real Prometheus (and promtool), openssl
# for TLS certificates, systemd-analyze for the unit file, vagrant and shellcheck for the lab,
# gcc to compile C against the probes' headers, and a headless Chromium for the web view.
packages=(python3-bpfcc python3-venv python3-pip bpftool iproute2 nftables curl)
test_packages=(prometheus openssl systemd vagrant shellcheck librsvg2-bin gcc chromium)

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" -eq 0 ]; then
    say "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
}

missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || printf '%s\n' "$p"
  done
}

install_packages() {
  local missing
  mapfile -t missing < <(missing_packages "$@")
  [ "${#missing[@]}" -eq 0 ] && return 0
  apt_update_once
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

package_available() {
  apt_update_once
  apt-cache show "$1" >/dev/null 2>&1
}

setup_headers() {
  local build="/lib/modules/$kernel/build"
  if [ -e "$build/include/linux/kconfig.h" ] || [ -e "$build/include/generated/autoconf.h" ]; then
    return 0
  fi
  if package_available "linux-headers-$kernel"; then
    install_packages "linux-headers-$kernel"
    return 0
  fi
  # Custom kernel with no headers package: use the distribution's default headers. synfin's
  # probes never read a struct through these headers' layout (they use tracepoint arguments,
  # packet bytes and offsets from the running kernel's BTF), so a version mismatch is harmless;
  # bcc only needs the headers to compile its helper definitions.
  local meta=linux-headers-amd64
  [ "$(uname -m)" = aarch64 ] && meta=linux-headers-arm64
  package_available "$meta" || meta=linux-headers-generic
  install_packages "$meta"
  local arch_dir common_dir
  arch_dir=$(find /usr/src -maxdepth 1 -type d -name 'linux-headers-*' ! -name '*-common' | sort -V | tail -n 1)
  common_dir=$(find /usr/src -maxdepth 1 -type d -name 'linux-headers-*-common' | sort -V | tail -n 1)
  [ -n "$arch_dir" ] || die "no kernel headers under /usr/src after installing $meta"
  [ -n "$common_dir" ] || common_dir="$arch_dir"
  mkdir -p "/lib/modules/$kernel"
  ln -sfn "$arch_dir" "$build"
  ln -sfn "$common_dir" "/lib/modules/$kernel/source"
  warn "no headers package exists for kernel $kernel; linked $build -> $arch_dir."
  warn "This is safe for synfin: its probes read tracepoint arguments, packet bytes and BTF-derived offsets, never the headers' struct layouts."
}

mount_tracefs() {
  if [ -e /sys/kernel/tracing/events ]; then
    return 0
  fi
  say "mounting tracefs at /sys/kernel/tracing"
  mount -t tracefs tracefs /sys/kernel/tracing || die "cannot mount tracefs (mount -t tracefs tracefs /sys/kernel/tracing)"
}

# What the installed synfin was built from. A regular install is a copy, stale as soon as any
# packaged file changes (hashed as files, not from git's index, which misses unstaged edits and
# does not exist in a tarball); an editable one reads collector/ and probes/ in place and is
# stale only when pyproject.toml (packages, entry points, dependencies) changes.
install_source_hash() {
  if [ "$mode" = editable ]; then
    sha256sum <"$repo/pyproject.toml"
    return
  fi
  (
    cd "$repo"
    find collector probes -name __pycache__ -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    sha256sum pyproject.toml
  ) | sha256sum
}

setup_venv() {
  local want stamp="$venv/.synfin-installed"
  want="$mode ${extras:-base} $(install_source_hash | cut -d" " -f1)"
  if [ -x "$venv/bin/synfin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv from /usr/bin/python3 (with system site-packages, for bcc)"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
  fi
  # An interrupted install must not look finished; the stamps of older versions of this
  # script would otherwise linger.
  rm -f "$stamp" "$venv"/.synfin-installed-*
  local spec="$repo" pip=("$venv/bin/pip" install -q --disable-pip-version-check)
  [ -n "$extras" ] && spec="${repo}[${extras}]"
  say "installing synfin into $venv ($mode${extras:+, with $extras extras})"
  if [ "$mode" = editable ]; then
    "${pip[@]}" -e "$spec"
  else
    # setuptools builds in $repo/build and never prunes it, so a file deleted from probes/
    # would still ship: start from an empty one, and leave none in the checkout.
    rm -rf "$repo/build"
    "${pip[@]}" "$spec"
    rm -rf "$repo/build"
  fi
  printf '%s' "$want" >"$stamp"
}

install_packages "${packages[@]}"
if [ "$extras" = test ]; then
  install_packages "${test_packages[@]}"
fi
setup_headers
mount_tracefs
setup_venv
/usr/bin/python3 -c 'import bcc' 2>/dev/null || die "bcc's Python module does not import; reinstall python3-bpfcc"
say "ready: $venv/bin/synfin"
