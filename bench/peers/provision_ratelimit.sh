#!/usr/bin/env bash
# envoyproxy/ratelimit (the reference rate-limit service) for bench/compare.py, built from
# its Go module at a pinned commit (the project tags no releases: a pseudo-version pins the
# commit) with the machine's Go toolchain. Its counters live in Redis (Debian's
# redis-server, tests/services/provision_redis.sh). Idempotent: built once into a versioned
# folder of the user's cache; Go's module and build caches keep a rebuild quick.
set -euo pipefail

RATELIMIT_VERSION=v1.4.1-0.20260122083618-3fb702589d36
DEST="${XDG_CACHE_HOME:-$HOME/.cache}/mixerhub/ratelimit-$RATELIMIT_VERSION"
BIN="$DEST/ratelimit"

if [ -x "$BIN" ]; then
    echo "ratelimit: $RATELIMIT_VERSION already built"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "ratelimit: no Go toolchain found; install Go to build ratelimit $RATELIMIT_VERSION" >&2
    exit 1
fi
echo "ratelimit: building $RATELIMIT_VERSION with $(go env GOVERSION) (a few minutes on a cold machine)"
mkdir -p "$DEST"
# The service's main package is src/service_cmd; go install names the binary after the
# folder, so build it to the expected name instead.
GOBIN="$DEST" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install \
    "github.com/envoyproxy/ratelimit/src/service_cmd@$RATELIMIT_VERSION"
mv "$DEST/service_cmd" "$BIN"
echo "ratelimit: $RATELIMIT_VERSION ready"
