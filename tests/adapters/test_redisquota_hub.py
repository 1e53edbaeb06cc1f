"""redisquota inside hubs: two ``mixerhub serve`` processes share one real Redis, and a
stopped Redis follows each rule's fail policy, counted."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mixerhub.app import Hub, Settings
from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.verdict import QuotaRequest
from tests.conftest import scrape
from tests.hub.test_cli import free_port, wait_http
from tests.services._proc import stop, wait_until
from tests.services.redis import RedisServer

HANDLER = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: shared, namespace: istio-system}}
spec:
  compiledAdapter: redisquota
  params:
    redisServerUrl: {url}
    quotas:
    - name: requestcountquota.instance.istio-system
      maxAmount: 10
      validDuration: 10m
      bucketDuration: 1s
      rateLimitAlgorithm: {algorithm}
"""
INSTANCE_AND_RULE = """
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestcountquota, namespace: istio-system}
spec:
  compiledTemplate: quota
  params:
    dimensions: {destination: destination.service.name | "unknown"}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quota, namespace: istio-system}
spec:
  actions: [{handler: shared, instances: [requestcountquota]}]
"""
ASK = {"requestcountquota": QuotaRequest(1)}


def serve(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    grpc_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixerhub", "serve", "--grpc", f"127.0.0.1:{grpc_port}",
         "--http", f"127.0.0.1:{http_port}", "--config", str(config), "--no-watch",
         "--cache-size", "0"],
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:  # fails at once, with the log, if the process exits instead of serving
        wait_until(lambda: _ready(http_port), proc, f"mixerhub serve (log: {log})", 60)
    except Exception:
        stop(proc)
        raise
    return proc, grpc_port


def _ready(http_port: int) -> bool:
    try:
        wait_http(f"http://127.0.0.1:{http_port}/readyz", timeout=0)
        return True
    except OSError:
        return False


@pytest.fixture
def two_hubs(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
             ) -> Iterator[tuple[int, int]]:
    config = tmp_path / "quota.yaml"
    config.write_text(HANDLER.format(url=redis_url, algorithm=request.param)
                      + INSTANCE_AND_RULE)
    procs = []
    try:
        for i in range(2):
            procs.append(serve(config, tmp_path / f"hub{i}.log"))
        yield procs[0][1], procs[1][1]
    finally:
        for proc, _ in procs:
            stop(proc)


@pytest.mark.parametrize("two_hubs", ["FIXED_WINDOW", "ROLLING_WINDOW"], indirect=True)
async def test_two_hub_processes_sharing_redis_grant_exactly_the_limit(
        two_hubs: tuple[int, int]) -> None:
    clients = [MixerClient(f"127.0.0.1:{port}") for port in two_hubs]
    try:
        results = [await clients[i % 2].check({"destination.service.name": "reviews"}, ASK)
                   for i in range(20)]
    finally:
        for client in clients:
            await client.close()
    granted = [r.quotas["requestcountquota"].granted_amount for r in results]
    assert granted == [1] * 10 + [0] * 10
    assert {r.verdict.code for r in results[10:]} == {8}  # RESOURCE_EXHAUSTED
    assert {r.verdict.code for r in results[:10]} == {0}


def fail_policies(url: str) -> str:
    """One redisquota handler; three quota instances, each with a rule: failPolicy open,
    failPolicy closed, and none (closed by default)."""
    docs = [f"""
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: redishandler, namespace: istio-system}}
spec:
  compiledAdapter: redisquota
  params:
    redisServerUrl: {url}
    quotas:
    - {{name: openquota.instance.istio-system, maxAmount: 100, validDuration: 1m}}
    - {{name: closedquota.instance.istio-system, maxAmount: 100, validDuration: 1m}}
    - {{name: defaultquota.instance.istio-system, maxAmount: 100, validDuration: 1m}}
"""]
    for name, policy in (("open", "failPolicy: open"), ("closed", "failPolicy: closed"),
                         ("default", "")):
        docs.append(f"""
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: {name}quota, namespace: istio-system}}
spec: {{compiledTemplate: quota, params: {{dimensions: {{}}}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: {name}-rule, namespace: istio-system}}
spec:
  {policy}
  actions: [{{handler: redishandler, instances: [{name}quota]}}]
""")
    return "---".join(docs)


async def test_redis_stopped_each_rule_fails_as_configured_and_is_counted(
        own_redis: RedisServer, tmp_path: Path) -> None:
    config = tmp_path / "fail.yaml"
    config.write_text(fail_policies(own_redis.url))
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(config),),
                       watch=False, cache_size=0))
    await hub.start()
    client = MixerClient(f"127.0.0.1:{hub.grpc.port}")

    async def ask(name: str) -> tuple[int, int, str]:
        result = await client.check({}, {name: QuotaRequest(3)})
        return (result.verdict.code, result.quotas[name].granted_amount,
                result.verdict.message)

    try:
        up = [await ask(n) for n in ("openquota", "closedquota", "defaultquota")]
        own_redis.stop()
        down = [await ask(n) for n in ("openquota", "closedquota", "defaultquota")]
        samples = await scrape(hub.http.port)
        own_redis.start()
        again = await ask("closedquota")
    finally:
        await client.close()
        await hub.stop()
    assert [(code, granted) for code, granted, _ in up] == [(0, 3)] * 3
    assert down[0][:2] == (0, 3)  # open: granted in full while Redis is down
    for code, granted, message in down[1:]:  # closed, and closed by default
        assert (code, granted) == (14, 0) and "handler redishandler" in message
    assert "rule closed-rule.istio-system" in down[1][2]
    assert samples['mixerhub_adapter_errors_total{handler="redishandler.handler.istio-system"}'] \
        == 3
    failures = 'mixerhub_rule_failures_total{{policy="{}",rule="{}-rule.istio-system"}}'
    assert samples[failures.format("open", "open")] == 1
    assert samples[failures.format("closed", "closed")] == 1
    assert samples[failures.format("closed", "default")] == 1
    assert samples['mixerhub_quota_requests_total{outcome="error"}'] == 2
    assert again[:2] == (0, 3)  # Redis back (empty): allocations work again
