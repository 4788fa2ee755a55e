#!/usr/bin/env bash
# Install Debian's Chromium for the end-to-end tests if it is missing (never a download
# of a browser build of Playwright's own). Fails loudly when it cannot be had.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "error: /usr/bin/chromium is missing; install Debian's chromium package (as root: apt-get install -y chromium)" >&2
  exit 1
fi
echo "Installing Debian's chromium for the end-to-end tests…"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
test -x /usr/bin/chromium
