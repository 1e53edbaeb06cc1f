"""The redisquota adapter against a real Redis (tests/services/redis.py).

Windows are driven by an injected clock whose time the adapter passes to the Lua scripts,
so nothing sleeps; one test runs on the Redis server's own clock. Redis failures are made
by stopping a real server.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from mixerhub.adapter import AdapterEnv, BackendError, QuotaArgs, QuotaResult, Status
from mixerhub.adapters.redisquota import RedisQuotaAdapter, RedisQuotaParams
from mixerhub.plugins import load_plugins
from mixerhub.templates.instance import Instance
from tests.fakes import FakeClock, Log
from tests.services.redis import RedisServer

RQ = "requestcountquota.instance.istio-system"


class Harness:
    """One adapter (a hub replica) on a Redis; replicas made with ``twin`` share a clock."""

    def __init__(self, url: str, clock: Any = None, **params: Any) -> None:
        self.clock = FakeClock() if clock is None else clock
        self.log, self.errors = Log(), 0
        self.params = {"redisServerUrl": url, **params}
        env = AdapterEnv(handler="redishandler.handler.istio-system",
                         registry=CollectorRegistry(), logger=self.log, clock=self.clock,
                         on_error=self._count)
        self.adapter = RedisQuotaAdapter(RedisQuotaParams.model_validate(self.params), env)

    def _count(self) -> None:
        self.errors += 1

    def twin(self) -> Harness:
        rest = {k: v for k, v in self.params.items() if k != "redisServerUrl"}
        return Harness(self.params["redisServerUrl"], clock=self.clock, **rest)

    async def ask(self, amount: int = 1, name: str = RQ, best_effort: bool = False,
                  dedup_id: str = "", **dimensions: Any) -> QuotaResult:
        return await self.adapter.quota(Instance(name, "quota", {"dimensions": dimensions}),
                                        QuotaArgs(amount, best_effort, dedup_id))

    async def take(self, amount: int = 1, **kw: Any) -> int:
        return (await self.ask(amount, **kw)).granted


@pytest.fixture
async def make(redis_url: str):
    made: list[Harness] = []

    async def factory(max_amount: int = 10, window: str = "10s", algorithm: str = "FIXED_WINDOW",
                      bucket: str | None = "1s", **extra: Any) -> Harness:
        quota = {"name": RQ, "maxAmount": max_amount, "validDuration": window,
                 "rateLimitAlgorithm": algorithm, **extra}
        if algorithm == "ROLLING_WINDOW" and bucket:
            quota["bucketDuration"] = bucket
        h = Harness(redis_url, quotas=[quota])
        await h.adapter.start()
        made.append(h)
        return h

    yield factory
    for h in made:
        await h.adapter.stop()


BOTH = pytest.mark.parametrize("algorithm", ["FIXED_WINDOW", "ROLLING_WINDOW"])


# ---- params -----------------------------------------------------------------------------

def test_istio_params_validate() -> None:
    params = RedisQuotaParams.model_validate({
        "redisServerUrl": "redis-release-master:6379", "connectionPoolSize": 10,
        "quotas": [{"name": RQ, "maxAmount": 500, "validDuration": "1s",
                    "bucketDuration": "500ms", "rateLimitAlgorithm": "ROLLING_WINDOW",
                    "overrides": [{"dimensions": {"destination": "reviews"}, "maxAmount": 1}]}]})
    quota = params.quotas[0]
    assert (quota.valid_duration, quota.bucket_duration) == (dt.timedelta(seconds=1),
                                                             dt.timedelta(milliseconds=500))
    assert quota.overrides[0].max_amount == 1


@pytest.mark.parametrize("url", ["redis-release-master:6379", "redis://10.0.0.1:6379/2",
                                 "rediss://user:pw@cache.example:6380", "unix:///run/redis.sock"])
def test_url_forms_accepted(url: str) -> None:
    RedisQuotaParams.model_validate({"redisServerUrl": url})


@pytest.mark.parametrize(("url", "error"), [
    ("redis-release-master", "expected host:port"),
    ("host:notaport", "invalid port"),
    ("http://host:6379", "scheme must be redis, rediss or unix"),
    ("redis://:6379", "expected host:port or a redis:// URL"),
])
def test_url_forms_refused(url: str, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        RedisQuotaParams.model_validate({"redisServerUrl": url})


@pytest.mark.parametrize(("quota", "error"), [
    ({"validDuration": "0s"}, "validDuration: must be at least 1ms"),
    ({"validDuration": "1s", "rateLimitAlgorithm": "ROLLING_WINDOW"},
     "bucketDuration: required for ROLLING_WINDOW"),
    ({"validDuration": "1s", "rateLimitAlgorithm": "ROLLING_WINDOW", "bucketDuration": "2s"},
     "at most validDuration"),
    ({"validDuration": "1h", "rateLimitAlgorithm": "ROLLING_WINDOW", "bucketDuration": "1ms"},
     "at most 10000 buckets"),
    ({"validDuration": "1s", "rateLimitAlgorithm": "SLIDING"}, "FIXED_WINDOW"),
    ({"validDuration": "1s", "overrides": [{"maxAmount": 1, "validDuration": "2s"}]},
     "Extra inputs are not permitted"),
])
def test_bad_quota_params(quota: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        RedisQuotaParams.model_validate({"redisServerUrl": "r:6379",
                                         "quotas": [{"name": RQ, **quota}]})


def test_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="defined twice"):
        RedisQuotaParams.model_validate({"redisServerUrl": "r:6379", "quotas": [
            {"name": RQ, "validDuration": "1s"}, {"name": RQ, "validDuration": "2s"}]})


def test_registered_through_the_entry_point() -> None:
    assert load_plugins().adapters.get("redisquota") is RedisQuotaAdapter


# ---- both algorithms ----------------------------------------------------------------------

@BOTH
async def test_grants_up_to_the_limit_then_nothing(make, algorithm: str) -> None:
    h = await make(10, algorithm=algorithm)
    assert [await h.take(6), await h.take(4), await h.take(1)] == [6, 4, 0]


@BOTH
async def test_all_or_nothing_unless_best_effort(make, algorithm: str) -> None:
    h = await make(10, algorithm=algorithm)
    assert await h.take(7) == 7
    assert await h.take(5) == 0
    assert await h.take(5, best_effort=True) == 3
    assert await h.take(1, best_effort=True) == 0


@BOTH
async def test_result_says_window_limit_remaining_and_reset(make, algorithm: str) -> None:
    h = await make(10, window="10s", algorithm=algorithm, bucket="1s")
    result = await h.ask(4)
    assert (result.granted, result.valid_duration, result.limit, result.remaining) == \
        (4, dt.timedelta(seconds=10), 10, 6)
    # fixed: the window ends 10 s after its first grant; rolling: the grant's bucket leaves
    # the window 10 s after the bucket's end, so within (10 s, 11 s].
    assert dt.timedelta(seconds=10) <= result.reset <= dt.timedelta(seconds=11)


@BOTH
async def test_overrides_first_match_and_each_dimension_set_counted_apart(
        make, algorithm: str) -> None:
    h = await make(5, algorithm=algorithm, overrides=[
        {"dimensions": {"destination": "reviews", "source": "web"}, "maxAmount": 1},
        {"dimensions": {"destination": "reviews"}, "maxAmount": 2},
        {"dimensions": {"code": 429}, "maxAmount": 3}])
    assert await h.take(5, destination="reviews", source="web", best_effort=True) == 1
    assert await h.take(5, destination="reviews", source="app", best_effort=True) == 2
    assert await h.take(5, destination="reviews", source="cli", best_effort=True) == 2
    assert await h.take(5, code=429, best_effort=True) == 3  # 429 matches "429"
    assert await h.take(5, destination="ratings", best_effort=True) == 5


@BOTH
async def test_a_dedup_id_replays_the_first_answer_without_consuming(
        make, algorithm: str) -> None:
    h = await make(3, algorithm=algorithm)
    assert await h.take(2, dedup_id="a") == 2
    assert await h.take(2, dedup_id="a") == 2  # the retry: same grant, nothing consumed
    assert await h.take(2, dedup_id="b") == 0  # only 1 left
    assert await h.take(2, dedup_id="b") == 0  # a refusal replays too
    assert await h.take(1, dedup_id="c") == 1


@BOTH
async def test_a_dedup_id_is_remembered_for_the_window(make, algorithm: str) -> None:
    h = await make(1, window="10s", algorithm=algorithm)
    assert await h.take(1, dedup_id="a") == 1
    h.clock.t += 9.9
    assert await h.take(1, dedup_id="a") == 1  # still the retry of the first call
    h.clock.t += 11.2  # past the window (and the rolling bucket): a new allocation
    assert await h.take(1, dedup_id="x") == 1
    assert await h.take(1, dedup_id="a") == 0


async def test_the_same_dedup_id_on_two_quotas_allocates_both(redis_url: str) -> None:
    other = "other.instance.istio-system"
    h = Harness(redis_url, quotas=[{"name": RQ, "maxAmount": 1, "validDuration": "1m"},
                                   {"name": other, "maxAmount": 1, "validDuration": "1m"}])
    await h.adapter.start()
    assert await h.take(1, dedup_id="r1") == 1
    assert await h.take(1, name=other, dedup_id="r1") == 1
    await h.adapter.stop()


@BOTH
async def test_two_replicas_share_the_count(make, algorithm: str) -> None:
    a = await make(10, algorithm=algorithm)
    b = a.twin()
    await b.adapter.start()
    grants = [await (a if i % 2 else b).take(1) for i in range(20)]
    await b.adapter.stop()
    assert sum(grants) == 10 and grants[:10] == [1] * 10


@BOTH
async def test_an_amount_of_zero_is_granted_zero(make, algorithm: str) -> None:
    h = await make(10, algorithm=algorithm)
    assert (await h.ask(0)).granted == 0
    assert await h.take(10) == 10


# ---- fixed window -------------------------------------------------------------------------

async def test_fixed_window_starts_with_its_first_grant_and_lasts_valid_duration(make) -> None:
    h = await make(3, window="10s")
    h.clock.t += 7.3  # an arbitrary moment: windows are not aligned to the clock
    assert await h.take(3) == 3
    h.clock.t += 9.99
    assert await h.take(1) == 0
    h.clock.t += 0.01  # exactly validDuration after the first grant: a new window
    assert await h.take(3) == 3


async def test_fixed_window_key_expires_with_its_window(make, redis_server: RedisServer) -> None:
    h = await make(3, window="10s")
    await h.take(1)
    (key,) = redis_server.call("KEYS", "mixerhub:quota:fw:*").splitlines()
    assert 0 < int(redis_server.call("PTTL", key)) <= 10_000


# ---- rolling window -----------------------------------------------------------------------

async def test_rolling_window_releases_late_by_at_most_one_bucket_never_early(make) -> None:
    h = await make(10, window="10s", algorithm="ROLLING_WINDOW", bucket="1s")
    h.clock.t = 1000.0  # the start of a bucket
    assert await h.take(10) == 10
    h.clock.t += 9.99
    assert await h.take(1) == 0
    h.clock.t += 0.01  # one window later: the bucket still overlaps the window
    assert await h.take(1) == 0
    h.clock.t += 1.0  # one window plus one bucket: surely released
    assert await h.take(10) == 10


async def test_rolling_window_rolls_rather_than_resets(make) -> None:
    h = await make(10, window="10s", algorithm="ROLLING_WINDOW", bucket="500ms")
    assert await h.take(5) == 5  # t = 0
    h.clock.t += 5
    assert await h.take(5) == 5  # t = 5
    h.clock.t += 5.6  # t = 10.6: the first five left, the second five did not
    assert await h.take(10, best_effort=True) == 5
    h.clock.t += 5
    assert await h.take(10, best_effort=True) == 5


async def test_rolling_window_buckets_need_not_divide_the_window(make) -> None:
    # Istio's ratings sample: 30 s in buckets of 9 s.
    h = await make(2, window="30s", algorithm="ROLLING_WINDOW", bucket="9s")
    h.clock.t = 900.0  # a bucket boundary (900 = 100 * 9)
    assert await h.take(2) == 2
    h.clock.t += 30.0  # the window (900, 930] still overlaps the grant's bucket [900, 909)
    assert await h.take(1) == 0
    h.clock.t += 9.0  # (909, 939]: the bucket has left
    assert await h.take(2) == 2


async def test_rolling_window_never_grants_more_than_the_limit_in_any_window(make) -> None:
    """Random amounts at random times; every interval of validDuration is checked."""
    h = await make(20, window="5s", algorithm="ROLLING_WINDOW", bucket="250ms")
    rng = random.Random(7)
    grants: list[tuple[float, int]] = []
    for _ in range(400):
        h.clock.t += rng.choice([0.0, 0.01, 0.05, 0.1, 0.3, 1.0, 2.5])
        granted = await h.take(rng.randint(1, 4), best_effort=rng.random() < 0.5)
        if granted:
            grants.append((h.clock.t, granted))
    assert sum(g for _, g in grants) > 200  # the window did roll: far more than 20 in all
    for start, _ in grants:  # any window (start - 5 s, start] holds at most 20
        assert sum(g for t, g in grants if start - 5.0 < t <= start) <= 20


async def test_idle_rolling_windows_leave_no_key(make, redis_server: RedisServer) -> None:
    h = await make(3, window="1s", algorithm="ROLLING_WINDOW", bucket="100ms")
    await h.take(3)
    assert redis_server.call("KEYS", "mixerhub:quota:rw*")
    h.clock.t += 3600
    assert await h.take(4) == 0  # refused: nothing to store, and the old key is deleted
    assert redis_server.call("KEYS", "mixerhub:quota:rw*") == ""


@BOTH
async def test_a_refusal_writes_nothing(make, redis_server: RedisServer, algorithm: str) -> None:
    """Under a flood of refused requests Redis only reads (no writes to replicate)."""
    h = await make(2, window="10s", algorithm=algorithm, bucket="1s")
    h.clock.t = 1000.0
    assert await h.take(2) == 2
    h.clock.t += 0.5  # same bucket: nothing expires
    redis_server.call("CONFIG", "RESETSTAT")
    assert await h.take(1) == 0
    stats = redis_server.call("INFO", "commandstats")
    assert "cmdstat_evalsha" in stats
    assert not any(f"cmdstat_{c}:" in stats for c in ("hset", "hincrby", "pexpire", "del",
                                                        "hdel", "set"))


# ---- the Redis server's clock ---------------------------------------------------------------

@BOTH
async def test_on_the_system_clock_time_comes_from_redis(redis_url: str, algorithm: str) -> None:
    from mixerhub.adapter import SystemClock

    quota = {"name": RQ, "maxAmount": 2, "validDuration": "1h", "bucketDuration": "1m",
             "rateLimitAlgorithm": algorithm}
    h = Harness(redis_url, clock=SystemClock(), quotas=[quota])
    assert h.adapter._now_ms() == ""  # the scripts read Redis's TIME
    await h.adapter.start()
    assert [await h.take(1), await h.take(1), await h.take(1)] == [1, 1, 0]
    await h.adapter.stop()


# ---- configuration mismatches and failures -----------------------------------------------

async def test_an_unconfigured_quota_is_granted_in_full_warned_once_counted(make) -> None:
    h = await make(1)
    assert await h.take(5, name="typo.instance.istio-system") == 5
    assert await h.take(5, name="typo.instance.istio-system") == 5
    assert h.errors == 2
    assert h.log.events("quota not configured in redisquota handler; granting in full") == 1


async def test_redis_down_raises_backend_error_and_recovers(own_redis: RedisServer) -> None:
    h = Harness(own_redis.url, quotas=[{"name": RQ, "maxAmount": 5, "validDuration": "1m"}])
    await h.adapter.start()
    assert await h.take(1) == 1 and h.adapter.status is Status.OK
    own_redis.stop()
    with pytest.raises(BackendError, match=f"redis {own_redis.url}"):
        await h.take(1)
    assert h.adapter.status is Status.ERROR
    assert h.log.events("redis unavailable") == 1
    own_redis.start()  # same port, empty (no persistence)
    assert await h.take(5) == 5 and h.adapter.status is Status.OK
    await h.adapter.stop()


async def test_a_redis_that_stops_answering_times_out_as_a_backend_error(
        own_redis: RedisServer) -> None:
    """The real server holding every command (CLIENT PAUSE, 4 s): the call fails after the
    adapter's timeout (1 s, one retry) instead of holding the request."""
    import time

    h = Harness(own_redis.url, quotas=[{"name": RQ, "maxAmount": 5, "validDuration": "1m"}])
    await h.adapter.start()
    assert await h.take(1) == 1
    assert own_redis.call("CLIENT", "PAUSE", "4000", "ALL") == "OK"
    started = time.monotonic()
    with pytest.raises(BackendError, match="[Tt]imeout"):
        await h.take(1)
    assert time.monotonic() - started < 3.5  # two 1 s attempts, not the 4 s pause
    assert own_redis.call("CLIENT", "UNPAUSE") == "OK"  # returns once the pause is over
    assert await h.take(1) == 1  # answering again
    await h.adapter.stop()


async def test_start_with_redis_down_does_not_fail_the_hub(own_redis: RedisServer) -> None:
    own_redis.stop()
    h = Harness(own_redis.url, quotas=[{"name": RQ, "maxAmount": 5, "validDuration": "1m"}])
    await h.adapter.start()  # no exception: allocations follow the fail policy instead
    assert h.adapter.status is Status.ERROR and h.errors == 1
    with pytest.raises(BackendError):
        await h.take(1)
    await h.adapter.stop()


async def test_not_started_or_stopped_is_a_backend_error(redis_url: str) -> None:
    h = Harness(redis_url, quotas=[{"name": RQ, "maxAmount": 5, "validDuration": "1m"}])
    with pytest.raises(BackendError, match="not started"):
        await h.take(1)
    await h.adapter.start()
    await h.adapter.stop()
    assert h.adapter.status is Status.NOT_READY
    with pytest.raises(BackendError, match="not started"):
        await h.take(1)


async def test_a_password_in_the_url_never_reaches_errors_or_logs(own_redis: RedisServer) -> None:
    url = f"redis://user:s3cret@127.0.0.1:{own_redis.port}/0"
    h = Harness(url, quotas=[{"name": RQ, "maxAmount": 5, "validDuration": "1m"}])
    own_redis.stop()
    await h.adapter.start()
    with pytest.raises(BackendError) as err:
        await h.take(1)
    await h.adapter.stop()
    assert "s3cret" not in str(err.value) and "user:***@" in str(err.value)
    assert "s3cret" not in repr(h.log.records)
