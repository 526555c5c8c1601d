#!/usr/bin/env bash
# Installs Debian's chromium for the page tests (Playwright drives it; Playwright's own browser
# downloads are not reachable here). Idempotent. Exit 3: cannot install here -> the tests skip.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "chromium missing and cannot be installed (needs root and apt-get)" >&2
    exit 3
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || { echo "apt-get update failed" >&2; exit 3; }
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null \
    || { echo "apt-get install chromium failed" >&2; exit 3; }
test -x /usr/bin/chromium
