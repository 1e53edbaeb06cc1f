#!/usr/bin/env bash
# fortio (Istio's load generator) for bench/compare.py's fixed-rate runs, built from its Go
# module with the machine's Go toolchain. Idempotent: the pinned version is built once into
# a versioned folder of the user's cache; Go's module and build caches keep a rebuild quick.
set -euo pipefail

# v1.69 and later need grol.io/grol, which the Go module proxy would not serve us (2026-12).
FORTIO_VERSION=v1.68.2
DEST="${XDG_CACHE_HOME:-$HOME/.cache}/mixerhub/fortio-$FORTIO_VERSION"
BIN="$DEST/fortio"

if [ -x "$BIN" ] && "$BIN" version 2>/dev/null | grep -q "${FORTIO_VERSION#v}"; then
    echo "fortio: $FORTIO_VERSION already built"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "fortio: no Go toolchain found; install Go to build fortio $FORTIO_VERSION" >&2
    exit 1
fi
echo "fortio: building $FORTIO_VERSION with $(go env GOVERSION) (about a minute on a cold machine)"
mkdir -p "$DEST"
GOBIN="$DEST" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install "fortio.org/fortio@$FORTIO_VERSION"
echo "fortio: $("$BIN" version 2>&1 | head -1) ready"
