#!/usr/bin/env bash
# A real OPA server for the tests, built from its Go module with the machine's Go toolchain
# (no OPA binary is packaged for PyPI, npm or Debian). Idempotent: the pinned version is
# built once into a versioned folder of the user's cache; Go's module and build caches keep
# a rebuild quick. tests/services/opa.py starts it per test session on a free port.
set -euo pipefail

OPA_VERSION=v1.22.3
DEST="${XDG_CACHE_HOME:-$HOME/.cache}/mixerhub/opa-$OPA_VERSION"
BIN="$DEST/opa"

if [ -x "$BIN" ] && "$BIN" version 2>/dev/null | grep -qx "Version: ${OPA_VERSION#v}"; then
    echo "opa: $OPA_VERSION already built"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "opa: no Go toolchain found; install Go to build OPA $OPA_VERSION" >&2
    exit 1
fi
echo "opa: building $OPA_VERSION with $(go env GOVERSION) (a few minutes on a cold machine)"
mkdir -p "$DEST"
GOBIN="$DEST" GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
    go install "github.com/open-policy-agent/opa@$OPA_VERSION"
echo "opa: $("$BIN" version | head -1) ready"
