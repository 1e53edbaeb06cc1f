#!/usr/bin/env bash
# wrk, the HTTP load generator of the benches (bench/) and of the compare smoke test
# (tests/bench): Debian's package. Idempotent; one progress line (apt's output on failure).
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
    echo "wrk: already installed"
    exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "wrk: installing Debian's wrk"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get install -y -qq wrk || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk; }; } >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
