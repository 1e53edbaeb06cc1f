"""Envoy's RateLimitService on the hub's gRPC port: descriptor YAML (memory and Redis
counters) and Mixer quota rules, over a real channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as common
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from mixerhub.app import Hub, Settings
from tests.conftest import scrape
from tests.services.redis import RedisServer

OK, OVER = rls_pb2.RateLimitResponse.OK, rls_pb2.RateLimitResponse.OVER_LIMIT
DESCRIPTORS = """
domain: shop
descriptors:
- key: remote_address
  rate_limit: {unit: minute, requests_per_unit: 3}
- key: path
  value: /free
  rate_limit: {unlimited: true}
- key: path
  rate_limit: {unit: hour, requests_per_unit: 100, name: per-path}
"""
QUOTA_RULES = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: mq, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params: {quotas: [{name: by-user.instance.istio-system, maxAmount: 2, validDuration: 60s}]}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: by-user, namespace: istio-system}
spec:
  compiledTemplate: quota
  params: {dimensions: {user: 'ratelimit.descriptor["user"] | "nobody"'}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: users, namespace: istio-system}
spec:
  match: ratelimit.domain == "mesh" && ratelimit.descriptor["user"] != ""
  actions: [{handler: mq, instances: [by-user]}]
"""


async def started(tmp_path: Path, backend: str = "memory") -> Hub:
    (tmp_path / "descriptors.yaml").write_text(DESCRIPTORS)
    (tmp_path / "rules.yaml").write_text(QUOTA_RULES)
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(tmp_path),),
                       watch=False, ratelimit_backend=backend))
    await hub.start()
    return hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    h = await started(tmp_path)
    yield h
    await h.stop()


def request(domain: str, *descriptors: dict[str, str], hits: int = 0,
            override: tuple[int, int] | None = None) -> rls_pb2.RateLimitRequest:
    req = rls_pb2.RateLimitRequest(domain=domain, hits_addend=hits)
    for entries in descriptors:
        d = req.descriptors.add()
        for k, v in entries.items():
            d.entries.add(key=k, value=v)
        if override:
            d.limit.CopyFrom(common.RateLimitDescriptor.RateLimitOverride(
                requests_per_unit=override[0], unit=override[1]))
    return req


async def ask(hub: Hub, req: rls_pb2.RateLimitRequest) -> rls_pb2.RateLimitResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.grpc.port}") as channel:
        return await rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit(req)


async def test_one_status_per_descriptor_in_order(hub: Hub) -> None:
    req = request("shop", {"path": "/free"}, {"remote_address": "10.0.0.1"},
                  {"unknown": "x"}, {"path": "/cart"})
    reply = await ask(hub, req)
    assert reply.overall_code == OK
    assert [s.code for s in reply.statuses] == [OK] * 4
    assert not reply.statuses[0].HasField("current_limit")  # unlimited
    assert reply.statuses[1].current_limit.requests_per_unit == 3
    assert reply.statuses[1].current_limit.unit == rls_pb2.RateLimitResponse.RateLimit.MINUTE
    assert reply.statuses[1].limit_remaining == 2
    assert 0 < reply.statuses[1].duration_until_reset.ToTimedelta().total_seconds() <= 60
    assert not reply.statuses[2].HasField("current_limit")  # no limit configured
    assert reply.statuses[3].current_limit.name == "per-path"


async def test_over_limit_sets_the_overall_code(hub: Hub) -> None:
    codes = [(await ask(hub, request("shop", {"remote_address": "10.0.0.2"}))).overall_code
             for _ in range(4)]
    assert codes == [OK, OK, OK, OVER]
    other = await ask(hub, request("shop", {"remote_address": "10.0.0.3"}))
    assert other.overall_code == OK
    metrics = await scrape(hub.http.port)
    assert metrics['mixerhub_quota_requests_total{outcome="exhausted"}'] >= 1


async def test_hits_addend_and_request_overrides(hub: Hub) -> None:
    reply = await ask(hub, request("shop", {"remote_address": "10.0.0.4"}, hits=3))
    assert (reply.overall_code, reply.statuses[0].limit_remaining) == (OK, 0)
    hour = rls_pb2.RateLimitResponse.RateLimit.HOUR
    reply = await ask(hub, request("shop", {"remote_address": "10.0.0.5"}, override=(1, hour)))
    assert reply.statuses[0].current_limit.requests_per_unit == 1
    assert reply.statuses[0].current_limit.unit == hour
    again = await ask(hub, request("shop", {"remote_address": "10.0.0.5"}, override=(1, hour)))
    assert again.overall_code == OVER


async def test_other_domains_charge_mixer_quota_rules(hub: Hub) -> None:
    codes = [(await ask(hub, request("mesh", {"user": "ann"}))).overall_code for _ in range(3)]
    assert codes == [OK, OK, OVER]
    reply = await ask(hub, request("mesh", {"user": "ann"}))
    assert reply.statuses[0].current_limit.requests_per_unit == 2
    assert reply.statuses[0].current_limit.unit == rls_pb2.RateLimitResponse.RateLimit.MINUTE
    free = await ask(hub, request("mesh", {"team": "x"}))  # no rule matches: not limited
    assert free.overall_code == OK and not free.statuses[0].HasField("current_limit")


async def test_empty_domain_is_invalid_argument(hub: Hub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ask(hub, rls_pb2.RateLimitRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_redis_counters_are_shared_by_replicas(tmp_path: Path,
                                                     redis_url: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = await started(tmp_path / "a", redis_url)
    b = await started(tmp_path / "b", redis_url)
    try:
        codes = [(await ask(hub, request("shop", {"remote_address": "10.9.9.9"}))).overall_code
                 for hub in (a, b, a, b)]
    finally:
        await a.stop()
        await b.stop()
    assert codes == [OK, OK, OK, OVER]


async def test_redis_down_is_unavailable_never_ok(tmp_path: Path,
                                                  own_redis: RedisServer) -> None:
    hub = await started(tmp_path, own_redis.url)
    try:
        assert (await ask(hub, request("shop", {"remote_address": "1.1.1.1"}))).overall_code == OK
        own_redis.stop()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ask(hub, request("shop", {"remote_address": "1.1.1.1"}))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Redis" in caught.value.details()
    finally:
        await hub.stop()
