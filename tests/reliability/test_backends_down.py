"""Backends failing under check traffic: every rule's fail policy is applied to every check
(n/n), counted, and the hub recovers when the backend is back.

Real servers (tests/services): Redis for redisquota, OPA for the opa adapter. "Stopped"
is the process gone (connections refused); "hung" is the process frozen with SIGSTOP, so
connections open but nothing answers and each call runs into its timeout — both faults
the real servers produce, so no fake is needed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixerhub.app import Hub, Settings
from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.verdict import QuotaRequest
from tests.conftest import scrape
from tests.services.opa import OpaServer
from tests.services.redis import RedisServer

N = 100  # checks per rule while the backend is down, all at once
OK, DENIED, UNAVAILABLE = 0, 7, 14


def doc(kind: str, name: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump({"apiVersion": "config.istio.io/v1alpha2", "kind": kind,
                           "metadata": {"name": name, "namespace": "istio-system"},
                           "spec": spec})


async def started(tmp_path: Path, docs: list[str]) -> tuple[Hub, MixerClient]:
    config = tmp_path / "policy.yaml"
    config.write_text("---\n".join(docs))
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(config),),
                       watch=False))
    await hub.start()
    return hub, MixerClient(f"127.0.0.1:{hub.grpc.port}", timeout=30)


class Timed:
    """Calls ``one`` ``n`` times at once; tallies outcomes, keeps each call's seconds."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def many(self, n: int, one: Callable[[int], Awaitable[tuple[int, ...]]]
                   ) -> Counter[tuple[int, ...]]:
        async def timed(i: int) -> tuple[int, ...]:
            started = time.perf_counter()
            try:
                return await one(i)
            finally:
                self.seconds.append(time.perf_counter() - started)
        return Counter(await asyncio.gather(*(timed(i) for i in range(n))))

    def figure(self) -> str:
        ordered = sorted(self.seconds)
        return (f"per check p50 {ordered[len(ordered) // 2] * 1000:.0f} ms, "
                f"max {ordered[-1] * 1000:.0f} ms")


def freeze(proc: object) -> None:
    os.kill(proc.pid, signal.SIGSTOP)  # type: ignore[attr-defined]


def thaw(proc: object) -> None:
    os.kill(proc.pid, signal.SIGCONT)  # type: ignore[attr-defined]


# --- Redis ------------------------------------------------------------------------------

def redis_docs(url: str) -> list[str]:
    names = ("open", "closed", "default")
    quotas = [{"name": f"{n}quota.instance.istio-system", "maxAmount": 1_000_000,
               "validDuration": "1m"} for n in names]
    docs = [doc("handler", "redis", {"compiledAdapter": "redisquota", "params": {
        "redisServerUrl": url, "connectionPoolSize": 32, "quotas": quotas}})]
    for name, policy in zip(names, ("open", "closed", None)):
        docs.append(doc("instance", f"{name}quota",
                        {"compiledTemplate": "quota", "params": {"dimensions": {}}}))
        rule: dict[str, Any] = {"actions": [{"handler": "redis",
                                             "instances": [f"{name}quota"]}]}
        if policy:
            rule["failPolicy"] = policy
        docs.append(doc("rule", f"{name}-rule", rule))
    return docs


@pytest.mark.parametrize("fault", ["stopped", "hung"])
async def test_redis_down_each_quota_rule_fails_as_configured_n_of_n(
        own_redis: RedisServer, tmp_path: Path, fault: str) -> None:
    hub, client = await started(tmp_path, redis_docs(own_redis.url))

    async def ask(name: str) -> tuple[int, ...]:
        result = await client.check({}, {name: QuotaRequest(2)})
        return result.verdict.code, result.quotas[name].granted_amount

    try:
        up = [await ask(f"{n}quota") for n in ("open", "closed", "default")]
        down_at = time.monotonic()
        if fault == "stopped":
            own_redis.stop()
        else:
            freeze(own_redis.proc)
        timed = Timed()
        tallies = {name: await timed.many(N, lambda i, n=name: ask(f"{n}quota"))
                   for name in ("open", "closed", "default")}
        took = time.monotonic() - down_at
        samples = await scrape(hub.http.port)
        if fault == "stopped":
            own_redis.start()
        else:
            thaw(own_redis.proc)
        back = [await ask(f"{n}quota") for n in ("open", "closed", "default")]
    finally:
        if fault == "hung" and own_redis.proc is not None:
            thaw(own_redis.proc)
        await client.close()
        await hub.stop()
    print(f"\nRedis {fault}: open {tallies['open'][(OK, 2)]}/{N} granted, closed "
          f"{tallies['closed'][(UNAVAILABLE, 0)]}/{N} UNAVAILABLE, no failPolicy "
          f"{tallies['default'][(UNAVAILABLE, 0)]}/{N} UNAVAILABLE ({took:.1f} s; "
          f"{timed.figure()})")
    assert up == [(OK, 2)] * 3
    assert tallies["open"] == Counter({(OK, 2): N})
    assert tallies["closed"] == Counter({(UNAVAILABLE, 0): N})
    assert tallies["default"] == Counter({(UNAVAILABLE, 0): N})
    failures = 'mixerhub_rule_failures_total{{policy="{}",rule="{}-rule.istio-system"}}'
    assert samples[failures.format("open", "open")] == N
    assert samples[failures.format("closed", "closed")] == N
    assert samples[failures.format("closed", "default")] == N
    assert samples['mixerhub_adapter_errors_total{handler="redis.handler.istio-system"}'] \
        == 3 * N
    assert back == [(OK, 2)] * 3


# --- OPA --------------------------------------------------------------------------------

POLICY = """package mixerhub.reliability

default allow := false

allow if startswith(input.action.path, "/ok/")
"""


def opa_docs(url: str) -> list[str]:
    def handler(name: str, fail_close: bool, upload: bool) -> str:
        params = {"url": url, "policyPath": "mixerhub/reliability/allow", "timeout": "300ms",
                  "failClose": fail_close}
        if upload:  # one handler uploads the policy both ask for
            params["policy"] = [POLICY]
        return doc("handler", name, {"compiledAdapter": "opa", "params": params})

    def rule(name: str, handler_name: str, key: str, policy: str | None = None) -> str:
        spec: dict[str, Any] = {"match": f'(request.headers["x-rule"] | "") == "{key}"',
                                "actions": [{"handler": handler_name,
                                             "instances": ["request"]}]}
        if policy:
            spec["failPolicy"] = policy
        return doc("rule", name, spec)
    return [handler("lenient", False, True), handler("strict", True, False),
            doc("instance", "request", {"compiledTemplate": "authorization", "params": {
                "action": {"path": 'request.path | "/"'}}}),
            rule("open-wins", "strict", "a", "open"),
            rule("closed-wins", "lenient", "b", "closed"),
            rule("fail-close", "strict", "c"),
            rule("fail-open", "lenient", "d")]


EXPECTED_DOWN = {"a": OK, "b": UNAVAILABLE, "c": UNAVAILABLE, "d": OK}
RULES = {"a": "open-wins", "b": "closed-wins", "c": "fail-close", "d": "fail-open"}


@pytest.mark.parametrize("fault", ["stopped", "hung"])
async def test_opa_down_each_rule_fails_as_configured_n_of_n(
        own_opa: OpaServer, tmp_path: Path, fault: str) -> None:
    hub, client = await started(tmp_path, opa_docs(own_opa.url))

    async def ask(rule: str, path: str) -> tuple[int, ...]:
        result = await client.check({"request.path": path,
                                     "request.headers": {"x-rule": rule}})
        return (result.verdict.code,)

    try:
        up = {r: (await ask(r, "/ok/x"), await ask(r, "/no")) for r in RULES}
        down_at = time.monotonic()
        if fault == "stopped":
            own_opa.stop()
        else:
            freeze(own_opa.proc)
        # Every path is new, so no verdict comes from the decision cache.
        timed = Timed()
        tallies = {r: await timed.many(N, lambda i, r=r: ask(r, f"/ok/{fault}/{i}"))
                   for r in RULES}
        took = time.monotonic() - down_at
        samples = await scrape(hub.http.port)
    finally:
        if fault == "hung" and own_opa.proc is not None:
            thaw(own_opa.proc)
        await client.close()
        await hub.stop()
    summary = ", ".join(f"{RULES[r]} {tallies[r][(EXPECTED_DOWN[r],)]}/{N} "
                        f"{'OK' if EXPECTED_DOWN[r] == OK else 'UNAVAILABLE'}" for r in RULES)
    print(f"\nOPA {fault}: {summary} ({took:.1f} s; {timed.figure()})")
    assert up == {r: ((OK,), (DENIED,)) for r in RULES}
    for r in RULES:
        assert tallies[r] == Counter({(EXPECTED_DOWN[r],): N}), (r, tallies[r])
        policy = "open" if EXPECTED_DOWN[r] == OK else "closed"
        assert samples[f'mixerhub_rule_failures_total{{policy="{policy}",'
                       f'rule="{RULES[r]}.istio-system"}}'] == N
    errors = 'mixerhub_adapter_errors_total{{handler="{}.handler.istio-system"}}'
    assert samples[errors.format("strict")] == samples[errors.format("lenient")] == 2 * N
