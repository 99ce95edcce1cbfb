#!/usr/bin/env bash
# Build synfin's container image with podman from this checkout, without a registry: the base
# is a Debian root filesystem made with debootstrap and imported (kept as
# localhost/synfin-base:bookworm; built once), synfin goes in as the wheel of the checkout.
#   sudo deploy/container/build.sh [--base IMAGE] [--tag TAG]
# prints the image's tag last. --base debian:bookworm-slim builds the same where a registry is
# reachable.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
fail() { echo "synfin image: $*" >&2; exit 1; }

version=$(/usr/bin/python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")
base=localhost/synfin-base:bookworm
tag=localhost/synfin:$version
while [ $# -gt 0 ]; do
  case $1 in
    --base) base=${2:?--base needs an image}; shift 2 ;;
    --tag) tag=${2:?--tag needs a name}; shift 2 ;;
    *) fail "unknown option $1; use --base IMAGE or --tag TAG" ;;
  esac
done
[ "$(id -u)" = 0 ] || fail "run as root (debootstrap and rootful podman need it)"
missing=()
for tool in podman:podman runc:runc debootstrap:debootstrap; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || fail "could not install ${missing[*]}; install them with apt-get and run this again"
fi
[ -x "$repo/.venv/bin/pip" ] || fail "no .venv in $repo; run scripts/setup.sh first"

# Podman here: runc, since crun 1.8 refuses this host's hybrid cgroup layout; the host's
# network for the build's apt-get and pip; limits no higher than this host allows, since
# podman's defaults may exceed them and raising them needs CAP_SYS_RESOURCE.
podman=(podman --runtime runc)
limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! "${podman[@]}" image exists "$base"; then
  [ "$base" = localhost/synfin-base:bookworm ] || "${podman[@]}" pull "$base" >/dev/null \
    || fail "cannot pull $base; leave out --base to build the local Debian base"
fi
if ! "${podman[@]}" image exists "$base"; then
  echo "synfin image: debootstrap bookworm for $base (a few minutes, once)" >&2
  debootstrap --variant=minbase bookworm "$work/root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || fail "debootstrap failed (last lines of its log follow); check the network to deb.debian.org
$(tail -5 "$work/debootstrap.log")"
  rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
  tar -C "$work/root" -c . | "${podman[@]}" import --message "debootstrap bookworm minbase" - "$base" >/dev/null
  rm -rf "$work/root"
fi

# The wheel of the checkout as it is (tracked files and new ones git does not ignore).
mkdir -p "$work/source" "$work/context"
while IFS= read -r -d '' path; do
  [ -f "$repo/$path" ] && (cd "$repo" && cp --parents "$path" "$work/source")
done < <(git -C "$repo" ls-files -z --cached --others --exclude-standard)
"$repo/.venv/bin/pip" wheel -q --no-deps --no-build-isolation -w "$work/context/wheels" "$work/source" >"$work/pip.log" 2>&1 \
  || fail "could not build synfin's wheel from $repo (last lines follow)
$(tail -5 "$work/pip.log")"
# Its dependencies' wheels too, fetched here: the build then needs no index (nor this host's
# certificates for it).
"$repo/.venv/bin/pip" wheel -q -w "$work/context/wheels" "$work/context/wheels"/synfin-*.whl >>"$work/pip.log" 2>&1 \
  || fail "could not fetch the wheels synfin depends on; check the network to PyPI (last lines follow)
$(tail -5 "$work/pip.log")"

echo "synfin image: building $tag from $base" >&2
"${podman[@]}" build -q --network host "${limits[@]}" --build-arg "BASE=$base" --tag "$tag" \
  --file "$repo/deploy/container/Containerfile" "$work/context" >"$work/build.log" 2>&1 \
  || fail "podman build failed (last lines follow)
$(tail -15 "$work/build.log")"
echo "$tag"
