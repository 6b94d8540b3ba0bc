#!/usr/bin/env bash
# Installs what `make images` / `make image-test` run for real when it is missing: podman and
# debootstrap (image builds without a Docker engine), PostgreSQL (the MLflow server's backend
# store) and redis-server. apt-get runs only when something is missing, so re-runs are cheap.
set -euo pipefail
source "$(dirname "$0")/../apt-missing.sh"
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
apt_install_missing "${missing[@]}"
