#!/usr/bin/env bash
# Makes the local base image (default roadvision-base:bookworm) that stands in for
# python:3.11-slim-bookworm on a machine that can reach the Debian mirror and PyPI but no
# container registry: a debootstrap minbase of bookworm plus Debian's python3 (3.11, the
# version of the CPU torch wheel), python3-venv and ca-certificates, imported into podman.
#
# Cached twice, so re-runs cost nothing: the image in podman's store is reused when present,
# and the root file system tarball in $CACHE_DIR is re-imported when only the store was wiped.
#   usage: scripts/images/base.sh [IMAGE] [CACHE_DIR]
set -euo pipefail
image=${1:-${BASE_IMAGE_LOCAL:-roadvision-base:bookworm}}
cache=${2:-${IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roadvision-images}}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${DEBIAN_SUITE:-bookworm}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/_common.sh"
need podman debootstrap

if podman image exists "$image"; then
  echo "base image $image: reused"
  exit 0
fi
tarball="$cache/$suite-minbase-python3.tar"
if [ ! -s "$tarball" ]; then
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root (it creates device nodes and chroots)"
  mkdir -p "$cache"
  rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  echo "debootstrap $suite (minbase + python3) from $mirror into $rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || die "debootstrap failed; last lines of $cache/debootstrap.log:
$(tail -n 15 "$cache/debootstrap.log")"
  # Slim, as the python:slim images are: no package lists, caches, docs or man pages.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
    "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
  tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
echo "importing $tarball as $image"
podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
  "$tarball" "$image" >/dev/null
echo "base image $image: built"
