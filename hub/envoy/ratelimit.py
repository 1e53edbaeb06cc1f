"""``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit``.

A request's domain picks how its descriptors are limited:

* a domain defined by a descriptor-YAML file (envoyproxy/ratelimit's format) → that
  tree's limits, counted in fixed windows by the hub's rate-limit counters (memory, or
  Redis shared by every replica: ``serve --ratelimit-backend redis://…``);
* any other domain → Mixer rules: each descriptor becomes a bag (``ratelimit.domain``,
  ``ratelimit.descriptor`` as a string map) and is charged ``hits_addend`` units of every
  quota whose rule matches it (memquota, redisquota …).

One status per descriptor, in request order; ``overall_code`` is OVER_LIMIT when any
descriptor is (quota-mode descriptors report their own status only). A backend failure
is gRPC UNAVAILABLE, never an OK reply, so Envoy's ``failure_mode_deny`` decides.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, cast

import grpc
from envoy.service.ratelimit.v3 import rls_pb2

from mixerhub.attributes.bag import AttributeBag
from mixerhub.errors import BackendUnavailable, WireError
from mixerhub.metrics import Metrics
from mixerhub.policy import Policy
from mixerhub.ratelimit.config import Domain, RateLimit
from mixerhub.ratelimit.limiter import Limiter, Outcome
from mixerhub.server.guard import guarded, parse, unary
from mixerhub.server.shedding import Shedder
from mixerhub.verdict import QuotaGrant, QuotaRequest

SERVICE_NAME = "envoy.service.ratelimit.v3.RateLimitService"
_Response = rls_pb2.RateLimitResponse
_UNITS = {"second": 1, "minute": 2, "hour": 3, "day": 4, "month": 5, "year": 6, "week": 7}
_UNIT_NAMES = {v: k for k, v in _UNITS.items()}
_RESOURCE_EXHAUSTED = 8


class RateLimitService:
    def __init__(self, policy: Callable[[], Policy],
                 domains: Callable[[], Mapping[str, Domain]], limiter: Limiter,
                 metrics: Metrics, log: Any, shedder: Shedder | None = None) -> None:
        self._policy = policy
        self._shedder = shedder
        self._domains = domains
        self._limiter = limiter
        self._metrics = metrics
        self._log = log

    def handler(self) -> grpc.GenericRpcHandler:
        return unary(SERVICE_NAME, {"ShouldRateLimit": guarded(
            "envoy_ratelimit", "ShouldRateLimit", self.should_rate_limit, self._metrics,
            self._log, shedder=self._shedder)})

    async def close(self) -> None:
        await self._limiter.counters.close()

    async def should_rate_limit(self, raw: bytes) -> bytes:
        request = parse(rls_pb2.RateLimitRequest, raw)
        if not request.domain:
            raise WireError("RateLimitRequest.domain is empty")
        hits = [d.hits_addend.value if d.HasField("hits_addend") else
                (request.hits_addend or 1) for d in request.descriptors]
        entries = [[(e.key, e.value) for e in d.entries] for d in request.descriptors]
        domain = self._domains().get(request.domain)
        if domain is not None:
            overrides = [_override(d) for d in request.descriptors]
            outcomes = await self._limiter.decide(domain, entries, hits, overrides)
        else:
            outcomes = [await self._by_rules(request.domain, e, n)
                        for e, n in zip(entries, hits)]
        for outcome in outcomes:
            if outcome.limit is not None and not outcome.limit.unlimited:
                self._metrics.quota_requests.labels(
                    "exhausted" if outcome.over else "granted").inc()
        return cast(bytes, encode(outcomes).SerializeToString())

    async def _by_rules(self, domain: str, entries: list[tuple[str, str]], hits: int
                        ) -> Outcome:
        bag = AttributeBag({"ratelimit.domain": domain, "ratelimit.descriptor": dict(entries)})
        policy = self._policy()
        wanted = {name: QuotaRequest(hits) for name in policy.default_quotas(bag)}
        if not wanted:
            return Outcome(False)
        grants = await policy.allocate(bag, wanted, "")
        if any(g.code not in (0, _RESOURCE_EXHAUSTED) for g in grants.values()):
            failed = next(g for g in grants.values() if g.code not in (0, _RESOURCE_EXHAUSTED))
            raise BackendUnavailable(failed.message or "a quota backend failed")
        grant = min(grants.values(), key=lambda g: (g.code == 0, g.remaining or 0))
        return _from_grant(grant)


def _from_grant(grant: QuotaGrant) -> Outcome:
    over = grant.code == _RESOURCE_EXHAUSTED
    if grant.limit is None:
        return Outcome(over)
    window = grant.valid_duration.total_seconds()
    unit = next((name for name, seconds in
                 (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86_400))
                 if window <= seconds), "day")
    per_unit = grant.limit if window <= 1 else round(grant.limit * _seconds(unit) / window)
    reset = (grant.reset or dt.timedelta(0)).total_seconds()
    return Outcome(over, RateLimit(per_unit, unit), grant.remaining or 0, reset)


def _seconds(unit: str) -> int:
    return {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}[unit]


def _override(descriptor: Any) -> RateLimit | None:
    if not descriptor.HasField("limit"):
        return None
    unit = _UNIT_NAMES.get(descriptor.limit.unit)
    if unit is None:
        raise WireError("descriptor limit override has an unknown unit")
    return RateLimit(descriptor.limit.requests_per_unit, unit)


def encode(outcomes: list[Outcome]) -> Any:
    response = _Response(overall_code=_Response.OK)
    for outcome in outcomes:
        status = response.statuses.add(code=_Response.OVER_LIMIT if outcome.over
                                       else _Response.OK)
        limit = outcome.limit
        if limit is None or limit.unlimited:
            continue
        status.current_limit.requests_per_unit = limit.requests_per_unit
        status.current_limit.unit = _UNITS[limit.unit]
        if limit.name:
            status.current_limit.name = limit.name
        status.limit_remaining = outcome.remaining
        status.duration_until_reset.FromTimedelta(dt.timedelta(seconds=outcome.reset_seconds))
        if outcome.over and not limit.quota_mode:
            response.overall_code = _Response.OVER_LIMIT
    return response
