"""The caching client (Gate) and the Mixer client against a real hub: verdict lifetimes on
an injected clock, check timeout, deduplication of a retried quota fetch, dictionary
fallback."""

from __future__ import annotations

import asyncio
from typing import Any

from mixerhub.attributes.dictionary import global_words
from mixerhub.proxy_filter.gate import Gate, GateOptions
from mixerhub.proxy_filter.metrics import ProxyMetrics
from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.proxy_filter.prefetch import PrefetchOptions
from mixerhub.verdict import QuotaRequest
from tests.conftest import CapturingPolicy
from tests.fakes import FakeClock
from tests.proxy_filter.conftest import hub_checks

ADMIN = {"request.url_path": "/admin", "request.headers": {"x-request-id": "1"}}
REVIEWS = {"destination.service.name": "reviews", "request.url_path": "/api"}


def gate_for(hub: Any, clock: FakeClock | None = None, **options: Any) -> Gate:
    return Gate(MixerClient(f"127.0.0.1:{hub.grpc.port}"), GateOptions(**options),
                ProxyMetrics(), clock=(clock or FakeClock()).monotonic)


class SlowHub:
    """A fake for a fault the real hub cannot show on demand: the first ``slow`` checks
    answer only after ``delay`` seconds (a lost or late answer). Delegates the rest."""

    def __init__(self, inner: Any, delay: float, slow: int = 1) -> None:
        self.inner, self.delay, self.slow = inner, delay, slow

    async def check(self, bag, quotas, dedup_id):  # type: ignore[no-untyped-def]
        if self.slow > 0:
            self.slow -= 1
            await asyncio.sleep(self.delay)
        return await self.inner.check(bag, quotas, dedup_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_verdict_duration_on_the_clock(policy_hub) -> None:
    clock = FakeClock()
    gate = gate_for(policy_hub, clock)
    try:
        before = hub_checks(policy_hub)
        for _ in range(3):
            decision = await gate.check(ADMIN)
            assert (decision.allowed, decision.http_status) == (False, 403)
        assert hub_checks(policy_hub) - before == 1
        clock.t += 61  # the denier's validDuration is 60 s
        assert not (await gate.check(ADMIN)).cache_hit
        assert hub_checks(policy_hub) - before == 2
    finally:
        await gate.close()


async def test_cache_off_asks_every_time(policy_hub) -> None:
    gate = gate_for(policy_hub, cache_size=0)
    try:
        before = hub_checks(policy_hub)
        for _ in range(5):
            assert not (await gate.check(ADMIN)).allowed
        assert hub_checks(policy_hub) - before == 5
    finally:
        await gate.close()


async def test_check_timeout_applies_the_fail_policy(hub) -> None:
    hub.policy = SlowHub(CapturingPolicy(), delay=2.0)
    gate = gate_for(hub, check_timeout=0.2)
    try:
        decision = await gate.check({"request.path": "/"})
        assert (decision.allowed, decision.http_status, decision.fail_policy) == \
            (False, 503, "closed")
        assert "DEADLINE_EXCEEDED" in decision.message
        assert gate.metrics.registry.get_sample_value(
            "mixerhub_proxy_fail_policy_total", {"policy": "closed"}) == 1
    finally:
        await gate.close()


async def test_a_retried_quota_fetch_is_not_allocated_twice(policy_hub) -> None:
    """The first fetch's answer comes too late; the retry carries the same
    deduplication_id, so memquota grants those units once: all 100 still reach requests."""
    policy_hub.policy = SlowHub(policy_hub.policy, delay=0.5)
    gate = gate_for(policy_hub, check_timeout=0.3,
                    prefetch=PrefetchOptions(min_amount=10))
    try:
        granted = 0
        for _ in range(150):
            granted += (await gate.prefetcher.acquire("requestcount", 1, REVIEWS)).ok
        assert granted == 100
        errors = gate.metrics.registry.get_sample_value(
            "mixerhub_proxy_hub_calls_total", {"rpc": "quota", "result": "error"})
        assert errors == 1  # the late one, retried
    finally:
        await gate.close()


async def test_client_falls_back_to_the_hubs_dictionary(hub) -> None:
    """A client whose dictionary is longer than the hub's is told to resend with the hub's
    word count; it does, and keeps doing so."""
    hub.policy = policy = CapturingPolicy()
    longer = (*global_words(), "x-tenant")
    client = MixerClient(f"127.0.0.1:{hub.grpc.port}", dictionary=longer)
    try:
        attrs = {"request.headers": {"x-tenant": "acme"}}
        result = await client.check(attrs, {"q": QuotaRequest(1)})
        assert result.verdict.ok
        assert client.encoder.global_word_count == len(global_words())
        await client.check(attrs)
    finally:
        await client.close()
    assert [c.values for c in policy.checks] == [attrs, attrs]
