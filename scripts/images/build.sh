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
for target in "${targets[@]}"; do
  case $target in
    serve) tag=$serve_image ;;
    train) tag=$train_image ;;
    *) die "unknown image $target (serve or train)" ;;
  esac
  start=$(date +%s)
  podman build --isolation=chroot --layers -f "$root/Dockerfile.$target" -t "$tag" \
    --build-arg BASE_IMAGE="$base" "${torch_args[@]}" "${mounts[@]}" "${extra[@]}" "$root" \
    >"$work/build-$target.log" 2>&1 || {
      tail -n 40 "$work/build-$target.log" >&2
      die "podman build of Dockerfile.$target failed (last lines above)"
    }
  size=$(podman image inspect --format '{{.Size}}' "$tag")
  echo "image $tag: built in $(( $(date +%s) - start )) s, $((size / 1000000)) MB"
done
