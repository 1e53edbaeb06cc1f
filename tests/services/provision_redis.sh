#!/usr/bin/env bash
# Redis for the tests: Debian's redis-server. Idempotent and quick when installed;
# tests/services/redis.py starts a private server per test session on a free port.
set -euo pipefail

version() { redis-server --version | sed -E 's/.* v=([^ ]+).*/\1/'; }

if command -v redis-server >/dev/null 2>&1; then
    echo "redis: redis-server $(version) already installed"
    exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "redis: apt-get update"
$SUDO apt-get update -qq >/dev/null
echo "redis: installing Debian's redis-server"
# The package's own service is not wanted: the tests start their own servers.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    redis-server >/dev/null
echo "redis: redis-server $(version) installed"
