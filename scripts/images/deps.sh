#!/usr/bin/env bash
# Installs what `make images` / `make image-test` run for real when it is missing: podman and
# debootstrap (image builds without a Docker engine), PostgreSQL (the MLflow server's backend
# store) and redis-server. apt-get runs only when something is missing, so re-runs are cheap.
set -euo pipefail
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged services; the image tests start their own on loopback ports.
for svc in postgresql redis-server; do
  $sudo service "$svc" stop >/dev/null 2>&1 || true
done
