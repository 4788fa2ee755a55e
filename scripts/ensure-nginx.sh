#!/usr/bin/env bash
# Install Debian's nginx for the production test (tests/deploy) and `make serve-prod` if it
# is missing (the nginx package only, never a downloaded build). As root it installs it; not
# root, or when that fails, it says so and carries on: the test then skips, saying why. In CI
# (REQUIRE_SERVICES=1, set by .ci/run) a missing nginx is an error. PARLOR_NGINX names
# another nginx binary (deploy/serve_prod.py and the test read it too).
set -euo pipefail
nginx="${PARLOR_NGINX:-/usr/sbin/nginx}"
if [ -f "$nginx" ] && [ -x "$nginx" ]; then
  exit 0
fi

missing() {
  if [ -n "${REQUIRE_SERVICES:-}" ]; then
    echo "error: nginx ($nginx) is required (REQUIRE_SERVICES=1): $1" >&2
    exit 1
  fi
  echo "note: nginx ($nginx) is not installed: $1." >&2
  echo "note: the production test (tests/deploy) will be skipped; .ci/run runs it." >&2
  exit 0
}

if [ "$(id -u)" != "0" ]; then
  missing "as root, apt-get install nginx"
fi
if [ "$nginx" != "/usr/sbin/nginx" ]; then
  missing "PARLOR_NGINX names it; only Debian's /usr/sbin/nginx is installed here"
fi
if ! command -v apt-get >/dev/null; then
  missing "no apt-get to install Debian's nginx with"
fi
echo "Installing Debian's nginx for the production test…"
# Installed, not run: Debian's package starts nginx on port 80 where systemd runs; the
# test and `make serve-prod` start their own nginx with their own configuration.
if ! { apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx \
    >/dev/null; }; then
  missing "apt-get install nginx failed"
fi
[ -x "$nginx" ] || missing "apt-get installed no $nginx"
