"""``redisquota``: rate limits counted in Redis, shared by every hub replica.

Params are Istio 1.4's. Each allocation is one atomic Lua script (``_redisquota_lua``):
FIXED_WINDOW counts from the first grant for ``validDuration``; ROLLING_WINDOW counts in
``bucketDuration`` buckets, releasing a grant between one window and one window plus one
bucket after it was made. Quota names and override matching are memquota's.

Time: the Redis server's clock (one clock for all replicas), unless the hub injected a clock
of its own (tests), whose ``now()`` is then passed to the scripts so windows move without
sleeping. Redis failures raise :class:`BackendError`: the rule's fail policy decides.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from typing import Any, ClassVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from pydantic import Field, field_validator, model_validator
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from mixerhub import hookimpl
from mixerhub.adapter import (AdapterEnv, BackendError, BaseAdapter, Params, QuotaArgs,
                              QuotaResult, Status, SystemClock)
from mixerhub.adapters import _redisquota_lua as lua
from mixerhub.adapters._params import Duration
from mixerhub.adapters.memquota import DimensionValue, Limit, QuotaPlan, dimension_text
from mixerhub.plugins import AdapterRegistry

#: Seconds to connect and to wait for a reply. A quota check is on the request path: a
#: Redis that does not answer within this fails the allocation (fail policy), not the hub.
TIMEOUT = 1.0
#: Most buckets in one rolling window; bounds the work of one script call.
MAX_BUCKETS = 10_000
KEY_PREFIX = "mixerhub:quota"


class Algorithm(enum.Enum):
    FIXED_WINDOW = "FIXED_WINDOW"
    ROLLING_WINDOW = "ROLLING_WINDOW"


class Override(Params):
    dimensions: dict[str, DimensionValue] = Field(
        default_factory=dict,
        description="Applies when every one of these instance dimensions equals the given "
                    "value (compared as strings); empty matches every instance")
    max_amount: int = Field(0, ge=0, alias="maxAmount",
                            description="The limit for matching instances")


class Quota(Params):
    name: str = Field(min_length=1,
                      description="The quota instance's full name, e.g. "
                                  "requestcountquota.instance.istio-system")
    max_amount: int = Field(0, ge=0, alias="maxAmount",
                            description="Most units granted per window")
    valid_duration: Duration = Field(alias="validDuration",
                                     description="Length of the window (at least 1ms)")
    bucket_duration: Duration | None = Field(
        None, alias="bucketDuration",
        description="ROLLING_WINDOW: length of one bucket (at least 1ms, at most the "
                    "window); grants are released up to one bucket late, never early")
    rate_limit_algorithm: Algorithm = Field(
        Algorithm.FIXED_WINDOW, alias="rateLimitAlgorithm",
        description="FIXED_WINDOW or ROLLING_WINDOW")
    overrides: tuple[Override, ...] = Field(
        (), description="Other limits by dimension values; the first match applies")

    @model_validator(mode="after")
    def _windows(self) -> Quota:
        if self.valid_duration < dt.timedelta(milliseconds=1):
            raise ValueError("validDuration: must be at least 1ms")
        if self.rate_limit_algorithm is Algorithm.ROLLING_WINDOW:
            _check_buckets(self.valid_duration, self.bucket_duration)
        return self


def _check_buckets(window: dt.timedelta, bucket: dt.timedelta | None) -> None:
    if bucket is None:
        raise ValueError("bucketDuration: required for ROLLING_WINDOW")
    if bucket < dt.timedelta(milliseconds=1) or bucket > window:
        raise ValueError("bucketDuration: must be at least 1ms and at most validDuration")
    if window / bucket > MAX_BUCKETS:
        raise ValueError(f"bucketDuration: at most {MAX_BUCKETS} buckets per window")


class RedisQuotaParams(Params):
    redis_server_url: str = Field(
        alias="redisServerUrl",
        description="The Redis server: host:port (Istio's form) or a redis://, rediss:// "
                    "or unix:// URL; checked for form only when validating")
    connection_pool_size: int = Field(10, gt=0, alias="connectionPoolSize",
                                      description="Most connections to Redis")
    quotas: tuple[Quota, ...] = Field((), description="The quotas this handler counts")

    @field_validator("redis_server_url")
    @classmethod
    def _url_form(cls, value: str) -> str:
        redis_url(value)
        return value

    @field_validator("quotas")
    @classmethod
    def _unique_names(cls, quotas: tuple[Quota, ...]) -> tuple[Quota, ...]:
        names = [q.name for q in quotas]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"quota {twice[0]!r} is defined twice")
        return quotas


def redis_url(value: str) -> str:
    """The URL redis-py wants, from Istio's ``host:port`` or a URL; ValueError if malformed."""
    text = value.strip()
    url = text if "://" in text else f"redis://{text}"
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{value!r}: scheme must be redis, rediss or unix")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"{value!r}: a unix URL needs a socket path")
        return url
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r}: invalid port") from None
    if not parts.hostname:
        raise ValueError(f"{value!r}: expected host:port or a redis:// URL")
    if "://" not in text and port is None:
        raise ValueError(f"{value!r}: expected host:port")
    return url


def display_url(value: str) -> str:
    """The URL for logs and errors: a password in it is replaced by ``***``."""
    parts = urlsplit(value if "://" in value else f"redis://{value}")
    if parts.password is None:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class _Plan:
    """One quota resolved once: its limits (memquota's matching) and its script."""

    def __init__(self, quota: Quota) -> None:
        window = quota.valid_duration
        self.plan = QuotaPlan(
            Limit(quota.max_amount, window),
            tuple((tuple(o.dimensions.items()), Limit(o.max_amount, window))
                  for o in quota.overrides))
        self.rolling = quota.rate_limit_algorithm is Algorithm.ROLLING_WINDOW
        self.window_ms = _ms(window)
        self.bucket_ms = _ms(quota.bucket_duration) if self.rolling and \
            quota.bucket_duration else 0
        kind = f"rw{self.bucket_ms}" if self.rolling else "fw"
        self.prefix = f"{KEY_PREFIX}:{kind}:{quota.name}"
        self.dedup_prefix = f"{KEY_PREFIX}:dedup:{quota.name}"


def _ms(delta: dt.timedelta) -> int:
    return max(1, round(delta.total_seconds() * 1000))


class RedisQuotaAdapter(BaseAdapter):
    """FIXED_WINDOW and ROLLING_WINDOW rate limits in a Redis shared by all replicas."""

    name: ClassVar[str] = "redisquota"
    Params = RedisQuotaParams
    templates: ClassVar[frozenset[str]] = frozenset({"quota"})

    def __init__(self, params: RedisQuotaParams, env: AdapterEnv) -> None:
        super().__init__(params, env)
        self.params: RedisQuotaParams = params
        self._plans = {q.name: _Plan(q) for q in params.quotas}
        self._url = redis_url(params.redis_server_url)
        self._shown = display_url(params.redis_server_url)
        self._client: aioredis.Redis | None = None
        self._scripts: dict[bool, Any] = {}
        # Only an injected clock is passed on; the real one defers to Redis's TIME.
        self._injected = not isinstance(env.clock, SystemClock)
        self._warned: set[str] = set()

    async def start(self) -> None:
        self._client = aioredis.Redis.from_url(
            self._url, max_connections=self.params.connection_pool_size,
            socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 1))  # one quick retry: a pooled socket may be stale
        self._scripts = {False: self._client.register_script(lua.FIXED_WINDOW),
                         True: self._client.register_script(lua.ROLLING_WINDOW)}
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            # Not a config error: the hub starts, and each allocation follows the fail policy.
            self.env.on_error()
            self._failed(exc)
            return
        self.status = Status.OK

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self.status = Status.NOT_READY

    async def quota(self, instance: Any, args: QuotaArgs) -> QuotaResult:
        plan = self._plans.get(instance.name)
        if plan is None:
            return self._unconfigured(instance.name, args)
        dimensions = {k: dimension_text(v)
                      for k, v in (instance.get("dimensions") or {}).items()}
        limit = plan.plan.limit_for(dimensions)
        if args.amount <= 0:
            return QuotaResult(granted=0, valid_duration=limit.window)
        return await self._run(plan, limit, dimensions, args)

    async def _run(self, plan: _Plan, limit: Limit, dimensions: dict[str, str],
                   args: QuotaArgs) -> QuotaResult:
        if self._client is None:
            raise BackendError(f"redis {self._shown}: adapter not started")
        keys = [f"{plan.prefix}:{_dimension_key(dimensions)}",
                f"{plan.dedup_prefix}:{args.dedup_id}"]
        argv = [limit.max_amount, args.amount, int(args.best_effort), plan.window_ms,
                plan.bucket_ms, int(bool(args.dedup_id)), self._now_ms()]
        try:
            reply = await self._scripts[plan.rolling](keys=keys, args=argv)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            raise BackendError(f"redis {self._shown}: {exc}") from exc
        self.status = Status.OK
        granted, replayed, remaining, reset_ms = (int(x) for x in reply)
        if replayed:  # a retry answered from its deduplication record
            return QuotaResult(granted=granted, valid_duration=limit.window)
        return QuotaResult(granted=granted, valid_duration=limit.window,
                           limit=limit.max_amount, remaining=max(remaining, 0),
                           reset=dt.timedelta(milliseconds=reset_ms))

    def _now_ms(self) -> str:
        if not self._injected:
            return ""
        return str(round(self.env.clock.now().timestamp() * 1000))

    def _failed(self, exc: BaseException) -> None:
        if self.status is not Status.ERROR:
            self.env.logger.warning("redis unavailable", url=self._shown,
                                    error=str(exc) or type(exc).__name__)
        self.status = Status.ERROR

    def _unconfigured(self, name: str, args: QuotaArgs) -> QuotaResult:
        # As memquota: a config mismatch is granted in full, warned once, counted each time.
        self.env.on_error()
        if name not in self._warned:
            self._warned.add(name)
            self.env.logger.warning("quota not configured in redisquota handler; granting "
                                    "in full", quota=name, handler=self.env.handler)
        return QuotaResult(granted=max(args.amount, 0))


def _dimension_key(dimensions: dict[str, str]) -> str:
    """The dimension values as part of a key: sorted, JSON-quoted, so no two sets clash."""
    return json.dumps(sorted(dimensions.items()), separators=(",", ":"), ensure_ascii=False)


@hookimpl
def mixerhub_register_adapters(registry: AdapterRegistry) -> None:
    registry.register(RedisQuotaAdapter)
