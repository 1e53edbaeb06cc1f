#!/usr/bin/env bash
# Chromium for the debug page test (tests/debugpage): Debian's chromium, run headless.
# Idempotent and quick when installed; prints one progress line (apt's output only when
# the install fails).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium: $(chromium --version 2>/dev/null | head -n1) already installed"
    exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "chromium: installing Debian's chromium (apt-get update + install, a few minutes)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install \
        -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
