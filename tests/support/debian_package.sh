#!/usr/bin/env bash
# debian_package.sh BINARY PACKAGE...: installs Debian packages for a test (chromium for the page
# tests, nginx for the replica tests) unless BINARY is already there. Idempotent.
# Exit 3: cannot install here (not root, no apt-get, no mirror) -> the tests skip, saying why.
set -euo pipefail
binary="$1"
shift
if [ -x "$binary" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "$binary missing and cannot be installed (needs root and apt-get)" >&2
    exit 3
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || { echo "apt-get update failed" >&2; exit 3; }
# A package's own service start may fail without an init system; the binary is what counts.
apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 || true
[ -x "$binary" ] || { echo "apt-get install $* failed" >&2; exit 3; }
