#!/usr/bin/env bash
# Helm, for the chart test (tests/ops/test_helm.py: `helm template` output checked against
# the Kubernetes schemas). Built from its Go module with the machine's Go toolchain, like
# OPA. Idempotent: the pinned version is built once into a versioned folder of the user's
# cache; with Go's module and build caches warm a rebuild takes seconds (cold: about
# 5 minutes on 2 busy cores, mostly downloads).
set -euo pipefail

HELM_VERSION=v3.22.0
DEST="${XDG_CACHE_HOME:-$HOME/.cache}/mixerhub/helm-$HELM_VERSION"
BIN="$DEST/helm"

if [ -x "$BIN" ] && [ "$("$BIN" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]; then
    echo "helm: $HELM_VERSION already built"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "helm: no Go toolchain found; install Go to build Helm $HELM_VERSION" >&2
    exit 1
fi
echo "helm: building $HELM_VERSION with $(go env GOVERSION)"
mkdir -p "$DEST"
# A module build leaves Helm's version as major.minor only; stamp the full one.
GOBIN="$DEST" GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
    go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
echo "helm: $("$BIN" version --short) ready"
