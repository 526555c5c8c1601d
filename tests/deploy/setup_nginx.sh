#!/usr/bin/env bash
# Installs Debian's nginx for the replica tests. Idempotent. Exit 3: cannot install here -> skip.
set -euo pipefail
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "nginx missing and cannot be installed (needs root and apt-get)" >&2
    exit 3
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || { echo "apt-get update failed" >&2; exit 3; }
# The package's own service start fails without an init system; the binary is what the tests need.
apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 || true
[ -x /usr/sbin/nginx ] || { echo "apt-get install nginx-light failed" >&2; exit 3; }
