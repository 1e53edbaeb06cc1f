"""Quota allocations per second: redisquota (both algorithms) against memquota, with a raw
redis-py INCR round trip as the baseline, all in one run.

    .venv/bin/python bench/quota_redis.py [--n 5000] [--redis redis://HOST:PORT/DB]

Covers: one ``await adapter.quota(instance, QuotaArgs(1))`` in process: dimension matching,
for redisquota the Lua script (EVALSHA) on a local Redis over TCP and its reply; no hub, no
gRPC. "c=1" awaits each call before the next (latency-bound); "c=32" keeps 32 calls in
flight over the adapter's connection pool (32 connections). The baseline is redis-py's
``await client.incr(key)``: the cheapest command, same client, same connection settings.
Without ``--redis`` a private redis-server (Debian's, tests/services) is started on a free
port and stopped at the end. The quota never runs out (maxAmount 10^12, window 1 h).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis.asyncio as aioredis  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from mixerhub.adapter import AdapterEnv, QuotaArgs  # noqa: E402
from mixerhub.adapters.memquota import MemQuotaAdapter, MemQuotaParams  # noqa: E402
from mixerhub.adapters.redisquota import RedisQuotaAdapter, RedisQuotaParams  # noqa: E402
from mixerhub.logs import configure, get_logger  # noqa: E402
from mixerhub.templates.instance import Instance  # noqa: E402
from tests.services.redis import RedisServer  # noqa: E402

NAME = "requestcountquota.instance.istio-system"
INSTANCE = Instance(NAME, "quota", {"dimensions": {"source": "web", "destination": "reviews"}})
ONE = QuotaArgs(1)
Call = Callable[[], Awaitable[Any]]


def env() -> AdapterEnv:
    return AdapterEnv(handler="bench.handler.istio-system", registry=CollectorRegistry(),
                      logger=get_logger("bench"))


def quota(algorithm: str) -> dict[str, Any]:
    return {"name": NAME, "maxAmount": 10**12, "validDuration": "1h", "bucketDuration": "1s",
            "rateLimitAlgorithm": algorithm}


async def rate(call: Call, n: int, concurrency: int) -> float:
    """Calls per second, best of 3 runs of n calls."""
    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
        best = max(best, (n // concurrency) * concurrency / (time.perf_counter() - started))
    return best


async def measure(url: str, n: int) -> list[tuple[str, float, float]]:
    rows = []
    client = aioredis.Redis.from_url(url, max_connections=32)
    await client.ping()
    rows.append(("redis-py INCR (baseline)", await rate(lambda: client.incr("bench:incr"), n, 1),
                 await rate(lambda: client.incr("bench:incr"), n, 32)))
    await client.aclose()
    for algorithm in ("FIXED_WINDOW", "ROLLING_WINDOW"):
        adapter = RedisQuotaAdapter(RedisQuotaParams.model_validate(
            {"redisServerUrl": url, "connectionPoolSize": 32, "quotas": [quota(algorithm)]}),
            env())
        await adapter.start()
        rows.append((f"redisquota {algorithm}", await rate(lambda: adapter.quota(INSTANCE, ONE), n, 1),
                     await rate(lambda: adapter.quota(INSTANCE, ONE), n, 32)))
        await adapter.stop()
    mem = MemQuotaAdapter(MemQuotaParams.model_validate(
        {"quotas": [{"name": NAME, "maxAmount": 10**12, "validDuration": "1h"}]}), env())
    await mem.start()
    rows.append(("memquota (in memory)", await rate(lambda: mem.quota(INSTANCE, ONE), n * 10, 1),
                 await rate(lambda: mem.quota(INSTANCE, ONE), n * 10, 32)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--redis", help="an existing Redis URL (default: start one)")
    args = parser.parse_args()
    configure("error")
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as folder:
        server = None if args.redis else RedisServer(Path(folder)).start()
        try:
            rows = asyncio.run(measure(args.redis or server.url, args.n))  # type: ignore[union-attr]
        finally:
            if server is not None:
                server.stop()
    base = rows[0][1]
    print("\nQuota allocations per second, in process (best of 3)\n")
    print(f"{'what':<28}{'c=1 /s':>10}{'µs/call':>9}{'c=32 /s':>10}{'c=1 ÷ INCR':>12}")
    for name, serial, parallel in rows:
        print(f"{name:<28}{serial:>10,.0f}{1e6 / serial:>9.1f}{parallel:>10,.0f}"
              f"{serial / base:>12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
