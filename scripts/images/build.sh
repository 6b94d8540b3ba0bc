#!/usr/bin/env bash
# Builds the CPU variants of Dockerfile.serve and Dockerfile.train with podman, without a
# Docker engine: `podman build --isolation=chroot` on the debootstrap base from base.sh.
#   usage: scripts/images/build.sh [serve|train ...]     (default: both)
#
# Settings (environment; the Makefile passes its variables):
#   SERVE_IMAGE, TRAIN_IMAGE  tags to build (roadvision-serve:cpu, roadvision-train:cpu)
#   BASE_IMAGE_LOCAL          base image tag (roadvision-base:bookworm), built when missing
#   TORCH_WHEELS_DIR          host folder holding the CPU torch 2.13.0 wheel; empty = the first
#                             find-links folder of the host's pip configuration that holds one,
#                             else torch comes from TORCH_INDEX_URL (download.pytorch.org)
#   IMAGE_BUILD_ARGS          extra arguments for podman build (e.g. --no-cache)
#   IMAGE_MIN_FREE_GB         free space podman's image store must have before a build (8)
#
# pip inside the build sees what pip on the host sees: the host's CA folder (a TLS proxy's
# certificate included) and its local find-links / file:// index folders are mounted read-only
# into the build steps, with a generated pip.conf naming them. Mounts never land in a layer.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$here/_common.sh"
need podman
serve_image=${SERVE_IMAGE:-roadvision-serve:cpu}
train_image=${TRAIN_IMAGE:-roadvision-train:cpu}
base=${BASE_IMAGE_LOCAL:-roadvision-base:bookworm}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(serve train)

# A rebuild leaves the image it replaced, and the build stage's image, untagged: some 4 GB a
# round, until the disk fills (it did, in CI). So the build stage gets a tag of its own (it stays
# the next build's cache), and untagged images with this project's label (Dockerfile LABEL
# org.roadvision.image) are removed before and after each build. Cache layers that a tagged
# image still uses are kept by podman; other projects' images are never touched.
prune_stale() { podman image prune -f --filter label=org.roadvision.image >/dev/null || true; }
stage_tag() { case ${1##*/} in *:*) echo "$1-$2" ;; *) echo "$1:$2" ;; esac; }

check_space() {
  local store avail_kb need_gb=${IMAGE_MIN_FREE_GB:-8}
  store=$(podman info --format '{{.Store.GraphRoot}}' 2>/dev/null) || store=/var/lib/containers
  while [ ! -d "$store" ]; do store=$(dirname "$store"); done
  avail_kb=$(df -Pk "$store" | awk 'NR == 2 {print $4}')
  [ "${avail_kb:-0}" -ge $((need_gb * 1024 * 1024)) ] || die "$((avail_kb / 1024 / 1024)) GB free \
under $store (podman's image store); an image build needs about $need_gb GB
(IMAGE_MIN_FREE_GB). See what holds it with: podman images --all; podman system df"
}

prune_stale
check_space
bash "$here/base.sh" "$base"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mounts=()
[ -d /etc/ssl/certs ] && mounts+=(-v /etc/ssl/certs:/etc/ssl/certs:ro)

# The host's local package folders, mounted under /run/host-pip/N (never into a layer).
pip_cfg() { python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.$1='\(.*\)'$/\1/p" | tail -n 1; }
links=() indexes=() n=0
for dir in $(pip_cfg find-links); do
  [ -d "$dir" ] || continue
  n=$((n + 1)); mounts+=(-v "$dir:/run/host-pip/$n:ro"); links+=("/run/host-pip/$n")
done
for url in $(pip_cfg extra-index-url); do
  case $url in
    # A file:// index's pages link to "../../files/...": mount its parent folder.
    file://*) dir=${url#file://}; dir=${dir%/}; [ -d "$dir" ] || continue
              n=$((n + 1)); mounts+=(-v "$(dirname "$dir"):/run/host-pip/$n:ro")
              indexes+=("file:///run/host-pip/$n/$(basename "$dir")") ;;
    *) indexes+=("$url") ;;
  esac
done
{
  echo "[global]"
  [ ${#links[@]} -eq 0 ] || echo "find-links = ${links[*]}"
  [ ${#indexes[@]} -eq 0 ] || echo "extra-index-url = ${indexes[*]}"
  [ -f /etc/ssl/certs/ca-certificates.crt ] && echo "cert = /etc/ssl/certs/ca-certificates.crt"
  echo "timeout = 60"
} >"$work/pip.conf"
mounts+=(-v "$work/pip.conf:/etc/pip.conf:ro")

# The CPU torch wheel: an explicit folder, else one from the host's find-links.
torch_args=()
wheels=${TORCH_WHEELS_DIR:-}
if [ -z "$wheels" ]; then
  for dir in $(pip_cfg find-links); do
    if compgen -G "$dir/torch-2.13.0+cpu-cp311-*.whl" >/dev/null; then wheels=$dir; break; fi
  done
fi
if [ -n "$wheels" ]; then
  compgen -G "$wheels/torch-2.13.0*.whl" >/dev/null \
    || die "TORCH_WHEELS_DIR=$wheels holds no torch-2.13.0 wheel"
  mounts+=(-v "$wheels:/run/torch-wheels:ro")
  torch_args=(--build-arg TORCH_WHEELS=/run/torch-wheels)
  echo "torch from the wheel folder $wheels"
else
  echo "torch from TORCH_INDEX_URL (the Dockerfile's default: download.pytorch.org)"
fi

# shellcheck disable=SC2206  # IMAGE_BUILD_ARGS is a word list on purpose
extra=(${IMAGE_BUILD_ARGS:-})
# podman build of $dockerfile with this script's mounts and arguments, logged to $log.
build() {
  podman build --isolation=chroot --layers -f "$dockerfile" --build-arg BASE_IMAGE="$base" \
    "${torch_args[@]}" "${mounts[@]}" "${extra[@]}" "$@" "$root" >>"$log" 2>&1 || {
      tail -n 40 "$log" >&2
      die "podman build of Dockerfile.$target failed (last lines above)"
    }
}
for target in "${targets[@]}"; do
  case $target in
    serve) tag=$serve_image ;;
    train) tag=$train_image ;;
    *) die "unknown image $target (serve or train)" ;;
  esac
  start=$(date +%s)
  dockerfile=$root/Dockerfile.$target
  log=$work/build-$target.log
  # A named build stage is built (and tagged) first; the full build then reuses its layers.
  if grep -qiE '^FROM .* AS build\b' "$dockerfile"; then
    build --target build -t "$(stage_tag "$tag" build)"
  fi
  build -t "$tag"
  prune_stale
  size=$(podman image inspect --format '{{.Size}}' "$tag")
  echo "image $tag: built in $(( $(date +%s) - start )) s, $((size / 1000000)) MB"
done
