#!/usr/bin/env bash
# OPA-Envoy (OPA with Envoy's ext_authz gRPC API) for bench/compare.py, built from its Go
# module with the machine's Go toolchain. Its go.mod has no replace directives, so a plain
# `go install module/cmd@version` works wherever the Go module proxy serves the module.
# Idempotent: built once into a versioned folder of the user's cache; Go's module and build
# caches keep a rebuild quick. MIXERHUB_OPA_ENVOY names a binary built some other way.
set -euo pipefail

OPA_ENVOY_VERSION=v1.19.1-envoy
DEST="${XDG_CACHE_HOME:-$HOME/.cache}/mixerhub/opa-envoy-$OPA_ENVOY_VERSION"
BIN="$DEST/opa-envoy-plugin"

if [ -n "${MIXERHUB_OPA_ENVOY:-}" ] && [ -x "$MIXERHUB_OPA_ENVOY" ]; then
    echo "opa-envoy: using MIXERHUB_OPA_ENVOY"
    exit 0
fi
if [ -x "$BIN" ]; then
    echo "opa-envoy: $OPA_ENVOY_VERSION already built"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "opa-envoy: no Go toolchain found; install Go to build OPA-Envoy $OPA_ENVOY_VERSION" >&2
    exit 1
fi
echo "opa-envoy: building $OPA_ENVOY_VERSION with $(go env GOVERSION) (a few minutes on a cold machine)"
mkdir -p "$DEST"
if ! GOBIN="$DEST" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install \
        "github.com/open-policy-agent/opa-envoy-plugin/cmd/opa-envoy-plugin@$OPA_ENVOY_VERSION"; then
    rmdir "$DEST" 2>/dev/null || true
    echo "opa-envoy: the Go module proxy did not serve $OPA_ENVOY_VERSION; set" \
         "MIXERHUB_OPA_ENVOY to an OPA-Envoy binary to run this scenario" >&2
    exit 1
fi
echo "opa-envoy: $("$BIN" version 2>&1 | head -1) ready"
