#!/usr/bin/env bash
# Installs the system programs the tests and the demo start for real (redis-server, prometheus)
# when they are missing. Runs apt-get only when something is missing, so it is cheap to repeat.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged services; tests start their own on loopback ports instead.
for svc in redis-server prometheus; do
  $sudo service "$svc" stop >/dev/null 2>&1 || true
done
