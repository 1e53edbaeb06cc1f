"""Quota prefetch: the pool's arithmetic on a fake clock, and the prefetcher against a real
hub (memquota: 100 units per 300 s for service reviews, tests/proxy_filter/data)."""

from __future__ import annotations

import asyncio

from mixerhub.proxy_filter.gate import Gate, GateOptions
from mixerhub.proxy_filter.metrics import ProxyMetrics
from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.proxy_filter.prefetch import PrefetchOptions, TokenPool
from tests.fakes import FakeClock

OPTIONS = PrefetchOptions(window=1.0, min_amount=10, max_amount=1000, exhausted_wait=0.5)
REVIEWS = {"destination.service.name": "reviews", "request.url_path": "/api"}


# -- the pool (pure) ------------------------------------------------------------------

def test_units_are_taken_whole_and_soonest_to_expire_first() -> None:
    expired: list[int] = []
    pool = TokenPool(OPTIONS, expired.append)
    pool.put(3, expires=20.0)
    pool.put(2, expires=10.0)
    assert pool.take(4, now=1.0)
    assert not pool.take(2, now=1.0)  # 1 left: all or nothing
    assert pool.available(now=15.0) == 1 and expired == []
    assert pool.available(now=20.0) == 0 and expired == [1]


def test_fetch_size_follows_the_last_window_of_demand() -> None:
    pool = TokenPool(OPTIONS)
    assert pool.want(1) == 10  # at least min_amount
    pool.put(100, expires=100.0)
    for i in range(40):
        pool.take(1, now=10.0 + i * 0.01)
    assert pool.want(1) == 40  # the last second used 40
    pool.take(1, now=12.0)  # a second later the old use has left the window
    assert pool.want(1) == 10
    assert pool.want(25) == 25  # never less than the request needs
    assert TokenPool(PrefetchOptions(max_amount=5)).want(1) == 5


def test_low_means_under_half_a_window_of_demand() -> None:
    pool = TokenPool(OPTIONS)
    pool.put(5, expires=100.0)
    assert not pool.low(now=1.0)  # 5 of a wanted 10
    pool.take(1, now=1.0)
    assert pool.low(now=1.0)
    pool.close(until=2.0, code=8, message="exhausted")
    assert not pool.low(now=1.5) and pool.closed(now=1.5) and not pool.closed(now=2.0)


# -- the prefetcher against a real hub ---------------------------------------------------

def gate_on(hub, clock: FakeClock, **options) -> Gate:
    opts = GateOptions(prefetch=PrefetchOptions(**{**OPTIONS.__dict__, **options}))
    return Gate(MixerClient(f"127.0.0.1:{hub.grpc.port}"), opts, ProxyMetrics(),
                clock=clock.monotonic)


def quota_calls(gate: Gate) -> float:
    return gate.metrics.registry.get_sample_value(
        "mixerhub_proxy_hub_calls_total", {"rpc": "quota", "result": "ok"}) or 0.0


async def test_never_more_than_the_limit_and_few_hub_calls(policy_hub) -> None:
    clock = FakeClock()
    gate = gate_on(policy_hub, clock)
    try:
        granted = 0
        for _ in range(300):
            outcome = await gate.prefetcher.acquire("requestcount", 1, REVIEWS)
            granted += outcome.ok
            clock.t += 0.001
        assert granted == 100
        assert quota_calls(gate) <= 12  # 10-unit fetches, then "exhausted" once
        denied = await gate.prefetcher.acquire("requestcount", 1, REVIEWS)
        assert (denied.ok, denied.code) == (False, 8)
        assert "exhausted" in denied.message
    finally:
        await gate.close()


async def test_exhausted_pool_waits_before_asking_again(policy_hub) -> None:
    clock = FakeClock()
    gate = gate_on(policy_hub, clock)
    try:
        while (await gate.prefetcher.acquire("requestcount", 1, REVIEWS)).ok:
            pass
        calls = quota_calls(gate)
        for _ in range(50):  # within exhausted_wait: answered here
            assert not (await gate.prefetcher.acquire("requestcount", 1, REVIEWS)).ok
        assert quota_calls(gate) == calls
        clock.t += 0.6
        assert not (await gate.prefetcher.acquire("requestcount", 1, REVIEWS)).ok
        assert quota_calls(gate) == calls + 1  # asked once more, still exhausted
    finally:
        await gate.close()


async def test_units_expire_with_the_grant(policy_hub) -> None:
    clock = FakeClock()
    gate = gate_on(policy_hub, clock)
    try:
        assert (await gate.prefetcher.acquire("requestcount", 1, REVIEWS)).ok  # fetches 10
        clock.t += 301  # the memquota window (300 s) is over: held units are stale
        assert (await gate.prefetcher.acquire("requestcount", 1, REVIEWS)).ok
        expired = gate.metrics.registry.get_sample_value(
            "mixerhub_proxy_quota_expired_units_total")
        assert expired == 9 and quota_calls(gate) == 2
    finally:
        await gate.close()


async def test_concurrent_first_requests_share_one_fetch(policy_hub) -> None:
    gate = gate_on(policy_hub, FakeClock())
    try:
        outcomes = await asyncio.gather(*(gate.prefetcher.acquire("requestcount", 1, REVIEWS)
                                          for _ in range(10)))
        assert all(o.ok for o in outcomes)
        assert quota_calls(gate) == 1
    finally:
        await gate.close()


async def test_pools_are_per_key(policy_hub) -> None:
    """The grant referenced destination.service.name: another service gets its own pool
    (here one no quota rule matches: granted in full)."""
    gate = gate_on(policy_hub, FakeClock())
    other = {**REVIEWS, "destination.service.name": "ratings"}
    try:
        for _ in range(150):
            assert (await gate.prefetcher.acquire("requestcount", 1, other)).ok
        assert (await gate.prefetcher.acquire("requestcount", 1, REVIEWS)).ok
    finally:
        await gate.close()
