"""Policy checks per second: the opa adapter embedded (regopy) and remote (a real OPA
server), with a listchecker check as the baseline, all in one run.

    .venv/bin/python bench/opa_eval.py [--n 3000]

Covers: one ``await adapter.check(instance)`` in process: building the input document from
the authorization instance, JSON, evaluation, the verdict; no hub, no gRPC, no decision
cache. Policies: OPA-Envoy's quick start (tests/data; HS256 JWT verification, glob, time)
with OPA-Envoy's input shape, and a two-rule policy in Istio's shape. "remote" sends each
decision over HTTP/1.1 keep-alive to an OPA server on 127.0.0.1 (the pinned build from
tests/services/provision_opa.sh, started here on a free port); "c=16" keeps 16 checks in
flight. The baseline is listchecker deciding a listentry value from a 3-entry in-memory list.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry  # noqa: E402

from mixerhub.adapter import AdapterEnv  # noqa: E402
from mixerhub.adapters.listchecker import ListCheckerAdapter, ListParams  # noqa: E402
from mixerhub.adapters.opa import OpaAdapter, OpaParams  # noqa: E402
from mixerhub.logs import configure, get_logger  # noqa: E402
from mixerhub.templates.instance import Instance  # noqa: E402
from tests.adapters.opa_tokens import quick_start_policy, token  # noqa: E402
from tests.adapters.test_opa import ISTIO_POLICY, authz  # noqa: E402
from tests.services.opa import OpaServer  # noqa: E402

Call = Callable[[], Awaitable[Any]]


def env() -> AdapterEnv:
    return AdapterEnv(handler="bench.handler.istio-system", registry=CollectorRegistry(),
                      logger=get_logger("bench"))


def envoy_request() -> Instance:
    return authz(user="spiffe://cluster.local/ns/default/sa/web", method="GET",
                 path="/people/7?lang=en",
                 subject_props={"source.ip": ipaddress.ip_address("10.0.0.1")},
                 action_props={"headers.authorization": f"Bearer {token('guest')}",
                               "host": "example.com"})


async def timing(call: Call, n: int, concurrency: int) -> tuple[float, float]:
    """(checks/s, median µs per check) over n checks after a warm-up."""
    for _ in range(min(n // 10, 200)):
        await call()
    latencies: list[float] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, statistics.median(latencies) * 1e6


async def adapters(opa_url: str) -> list[tuple[str, Any, Instance]]:
    listing = ListCheckerAdapter(ListParams.model_validate(
        {"overrides": ["reviews", "ratings", "details"]}), env())
    istio = {"policy": [ISTIO_POLICY], "checkMethod": "data.mixerauthz.allow"}
    quick = {"policy": [quick_start_policy()], "inputShape": "envoy"}
    made = [
        ("listchecker (baseline)", listing, Instance("v.instance.istio-system", "listentry",
                                                     {"value": "ratings"})),
        ("opa embedded, Istio policy", OpaAdapter(OpaParams.model_validate(istio), env()),
         authz(user="alice", method="GET")),
        ("opa embedded, quick start", OpaAdapter(OpaParams.model_validate(
            {**quick, "checkMethod": "data.envoy.authz.allow"}), env()), envoy_request()),
        ("opa remote, quick start", OpaAdapter(OpaParams.model_validate(
            {**quick, "url": opa_url, "policyPath": "envoy/authz/allow"}), env()),
         envoy_request()),
    ]
    for _, adapter, _ in made:
        await adapter.start()
    return made


async def measure(opa_url: str, n: int) -> list[tuple[str, float, float, float]]:
    rows = []
    for name, adapter, instance in await adapters(opa_url):
        result = await adapter.check(instance)
        assert result.code == 0, (name, result)
        serial, median = await timing(lambda: adapter.check(instance), n, 1)
        parallel, _ = await timing(lambda: adapter.check(instance), n, 16)
        rows.append((name, serial, median, parallel))
        await adapter.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    configure("error")
    server = OpaServer().start()
    try:
        rows = asyncio.run(measure(server.url, args.n))
    finally:
        server.stop()
    print("\nPolicy checks, in process (adapter.check, no decision cache)\n")
    print(f"{'what':<30}{'c=1 /s':>10}{'p50 µs':>9}{'c=16 /s':>10}{'÷ baseline':>12}")
    base = rows[0][1]
    for name, serial, median, parallel in rows:
        print(f"{name:<30}{serial:>10,.0f}{median:>9.1f}{parallel:>10,.0f}"
              f"{serial / base:>12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
