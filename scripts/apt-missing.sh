#!/usr/bin/env bash
# Shared by scripts/system-deps.sh and scripts/images/deps.sh: `apt_install_missing PKG...`
# installs the given Debian packages with apt-get (sudo when not root), then stops the services
# Debian starts with them, because the tests start their own on loopback ports.
apt_install_missing() {
  [ $# -eq 0 ] && return 0
  local sudo="" svc
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  for svc in postgresql redis-server prometheus; do
    $sudo service "$svc" stop >/dev/null 2>&1 || true
  done
}
