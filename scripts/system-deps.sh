#!/usr/bin/env bash
# Installs the system programs the tests and the demo start for real (redis-server, prometheus)
# when they are missing. Runs apt-get only when something is missing, so it is cheap to repeat.
set -euo pipefail
source "$(dirname "$0")/apt-missing.sh"
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# the browser tests (tests/test_browser.py) drive Debian's headless chromium, never a download
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
apt_install_missing "${missing[@]}"
