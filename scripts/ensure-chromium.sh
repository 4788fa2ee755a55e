#!/usr/bin/env bash
# Install Debian's Chromium for the end-to-end tests if it is missing (never a download
# of a browser build of Playwright's own). As root it installs the chromium package; not
# root, or when that fails, it says so and carries on: the end-to-end tests then skip,
# saying why. In CI (REQUIRE_SERVICES=1, set by .ci/run) a missing Chromium is an error.
# PARLOR_CHROMIUM names another Chromium (tests/e2e/conftest.py reads it too).
set -euo pipefail
chromium="${PARLOR_CHROMIUM:-/usr/bin/chromium}"
if [ -f "$chromium" ] && [ -x "$chromium" ]; then
  exit 0
fi

missing() {
  if [ -n "${REQUIRE_SERVICES:-}" ]; then
    echo "error: Chromium ($chromium) is required (REQUIRE_SERVICES=1): $1" >&2
    exit 1
  fi
  echo "note: Chromium ($chromium) is not installed: $1." >&2
  echo "note: the end-to-end tests (tests/e2e) will be skipped; .ci/run runs them." >&2
  exit 0
}

if [ "$(id -u)" != "0" ]; then
  missing "as root, apt-get install chromium (or run make test as root)"
fi
if [ "$chromium" != "/usr/bin/chromium" ]; then
  missing "PARLOR_CHROMIUM names it; only Debian's /usr/bin/chromium is installed here"
fi
if ! command -v apt-get >/dev/null; then
  missing "no apt-get to install Debian's chromium with"
fi
echo "Installing Debian's chromium for the end-to-end tests…"
if ! { apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
  missing "apt-get install chromium failed"
fi
[ -x "$chromium" ] || missing "apt-get installed no $chromium"
