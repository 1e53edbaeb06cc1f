"""The memquota adapter, on a fake clock: rolling windows, counters, overrides by
dimensions, best-effort grants, deduplication and idle-key expiry. Nothing sleeps."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from mixerhub.adapter import AdapterEnv, QuotaArgs
from mixerhub.adapters import memquota
from mixerhub.adapters.memquota import MemQuotaAdapter, MemQuotaParams
from mixerhub.plugins import load_plugins
from mixerhub.templates.instance import Instance
from tests.fakes import FakeClock, Log

RQ = "requestcountquota.instance.istio-system"


class Harness:
    def __init__(self, **params: Any) -> None:
        self.clock, self.log, self.errors = FakeClock(), Log(), 0
        env = AdapterEnv(handler="quotas.istio-system", registry=CollectorRegistry(),
                         logger=self.log, clock=self.clock, on_error=self._count)
        self.adapter = MemQuotaAdapter(MemQuotaParams.model_validate(params), env)

    def _count(self) -> None:
        self.errors += 1

    async def take(self, amount: int, name: str = RQ, best_effort: bool = False,
                   dedup_id: str = "", **dimensions: Any) -> int:
        result = await self.adapter.quota(Instance(name, "quota", {"dimensions": dimensions}),
                                          QuotaArgs(amount, best_effort, dedup_id))
        return result.granted


def rate(max_amount: int, window: str = "10s", **extra: Any) -> Harness:
    return Harness(quotas=[{"name": RQ, "maxAmount": max_amount, "validDuration": window,
                            **extra}])


# ---- rolling windows ------------------------------------------------------------------

async def test_grants_up_to_the_limit_then_nothing() -> None:
    h = rate(10)
    assert await h.take(6) == 6
    assert await h.take(4) == 4
    assert await h.take(1) == 0


async def test_all_or_nothing_without_best_effort() -> None:
    h = rate(10)
    assert await h.take(7) == 7
    assert await h.take(5) == 0  # not 3
    assert await h.take(3) == 3


async def test_best_effort_grants_what_is_left() -> None:
    h = rate(10)
    assert await h.take(7) == 7
    assert await h.take(5, best_effort=True) == 3
    assert await h.take(1, best_effort=True) == 0


async def test_result_lifetime_is_the_window() -> None:
    h = rate(10, "1m")
    result = await h.adapter.quota(Instance(RQ, "quota", {"dimensions": {}}), QuotaArgs(1))
    assert result.valid_duration == dt.timedelta(minutes=1)


async def test_results_say_limit_remaining_and_when_more_frees_up() -> None:
    h = rate(10, "10s")  # 20 slots of 0.5 s; the clock starts at t = 1000.0
    instance = Instance(RQ, "quota", {"dimensions": {}})
    first = await h.adapter.quota(instance, QuotaArgs(4))
    assert (first.limit, first.remaining) == (10, 6)
    # the grant sits in the slot [1000.0, 1000.5): it leaves the window at 1010.5
    assert first.reset == dt.timedelta(seconds=10.5)
    h.clock.t += 3
    refused = await h.adapter.quota(instance, QuotaArgs(7))
    assert (refused.granted, refused.remaining) == (0, 6)
    assert refused.reset == dt.timedelta(seconds=7.5)


async def test_counters_have_no_reset_time() -> None:
    h = Harness(quotas=[{"name": RQ, "maxAmount": 3, "validDuration": "0s"}])
    result = await h.adapter.quota(Instance(RQ, "quota", {"dimensions": {}}), QuotaArgs(2))
    assert (result.limit, result.remaining, result.reset) == (3, 1, None)


async def test_grants_are_released_after_the_window_never_before() -> None:
    h = rate(10, "10s")
    assert await h.take(10) == 10
    h.clock.t += 9.9
    assert await h.take(1) == 0
    h.clock.t += 0.1  # exactly one window later: the grant may still count (late, not early)
    assert await h.take(1) == 0
    h.clock.t += 0.5  # one window plus one sub-bucket (10 s / 20): surely released
    assert await h.take(10) == 10


async def test_the_window_rolls_rather_than_resets() -> None:
    h = rate(10, "10s")
    assert await h.take(5) == 5  # t = 0
    h.clock.t += 5
    assert await h.take(5) == 5  # t = 5
    h.clock.t += 5.6
    # t = 10.6: the first five have left the window, the second five have not.
    assert await h.take(10, best_effort=True) == 5
    h.clock.t += 5
    assert await h.take(10, best_effort=True) == 5  # t = 15.6: the second five are gone too


async def test_a_long_idle_gap_empties_the_window() -> None:
    h = rate(3, "1s")
    assert await h.take(3) == 3
    h.clock.t += 3600
    assert await h.take(3) == 3


async def test_counter_never_replenishes() -> None:
    h = Harness(quotas=[{"name": RQ, "maxAmount": 3}])
    assert await h.take(2) == 2
    h.clock.t += 1e6
    assert await h.take(2, best_effort=True) == 1
    h.clock.t += 1e6
    assert await h.take(1) == 0
    result = await h.adapter.quota(Instance(RQ, "quota", {"dimensions": {}}), QuotaArgs(1))
    assert result.valid_duration == dt.timedelta(0)


async def test_each_set_of_dimension_values_has_its_own_window() -> None:
    h = rate(2)
    assert await h.take(2, source="a", destination="reviews") == 2
    assert await h.take(1, source="a", destination="reviews") == 0
    assert await h.take(2, source="b", destination="reviews") == 2
    assert await h.take(2, destination="reviews") == 2  # fewer dimensions: another key


async def test_zero_amount_grants_zero_and_consumes_nothing() -> None:
    h = rate(1)
    assert await h.take(0) == 0
    assert await h.take(1) == 1


async def test_quotas_are_independent() -> None:
    h = Harness(quotas=[{"name": RQ, "maxAmount": 1, "validDuration": "1s"},
                        {"name": "other.instance.ns", "maxAmount": 1, "validDuration": "1s"}])
    assert await h.take(1) == 1
    assert await h.take(1, name="other.instance.ns") == 1
    assert await h.take(1) == 0


# ---- overrides ------------------------------------------------------------------------

def with_overrides() -> Harness:
    return rate(100, "10s", overrides=[
        {"dimensions": {"destination": "reviews"}, "maxAmount": 1, "validDuration": "5s"},
        {"dimensions": {"destination": "ratings", "source": "web"}, "maxAmount": 2},
        {"dimensions": {"destination": "ratings"}, "maxAmount": 3},
        {"dimensions": {"code": 429, "canary": True}, "maxAmount": 4, "validDuration": "0s"},
    ])


async def test_override_matching_all_its_dimensions_applies() -> None:
    h = with_overrides()
    assert await h.take(5, best_effort=True, destination="reviews", source="x") == 1
    assert await h.take(5, best_effort=True, destination="ratings", source="web") == 2


async def test_first_matching_override_wins() -> None:
    h = with_overrides()
    # matches both the second and the third override; the second comes first
    assert await h.take(9, best_effort=True, destination="ratings", source="web") == 2
    assert await h.take(9, best_effort=True, destination="ratings", source="app") == 3


async def test_no_matching_override_uses_the_quota_limit() -> None:
    h = with_overrides()
    assert await h.take(200, best_effort=True, destination="details") == 100
    assert await h.take(200, best_effort=True, source="web") == 100  # destination missing


async def test_override_window_and_inherited_window() -> None:
    h = with_overrides()
    assert await h.take(1, destination="reviews") == 1
    assert await h.take(3, destination="ratings", source="app") == 3
    h.clock.t += 5.3  # past the override's own 5 s window (+ one sub-bucket)
    assert await h.take(1, destination="reviews") == 1
    assert await h.take(1, destination="ratings", source="app") == 0  # inherits 10 s
    h.clock.t += 5.3
    assert await h.take(1, destination="ratings", source="app") == 1


async def test_dimensions_compare_as_strings_and_zero_window_override_is_a_counter() -> None:
    h = with_overrides()
    assert await h.take(9, best_effort=True, code=429, canary=True) == 4
    h.clock.t += 1e6
    assert await h.take(1, code="429", canary="true") == 0  # same key as text, never refilled


# ---- deduplication --------------------------------------------------------------------

async def test_a_retry_with_the_same_dedup_id_is_not_charged_twice() -> None:
    h = rate(2)
    assert await h.take(1, dedup_id="req-1") == 1
    assert await h.take(1, dedup_id="req-1") == 1
    assert await h.take(1, dedup_id="req-1") == 1
    assert await h.take(1, dedup_id="req-2") == 1
    assert await h.take(1, dedup_id="req-3") == 0  # only two units were ever consumed


async def test_a_denial_is_replayed_for_its_dedup_id() -> None:
    h = Harness(quotas=[{"name": RQ, "maxAmount": 1, "validDuration": "1s"}],
                minDeduplicationDuration="5s")
    assert await h.take(1) == 1
    assert await h.take(1, dedup_id="late") == 0
    h.clock.t += 1.1  # capacity is back, but a retry within 5 s gets the first answer
    assert await h.take(1, dedup_id="late") == 0
    assert await h.take(1) == 1


async def test_dedup_ids_are_forgotten_after_min_deduplication_duration() -> None:
    h = Harness(quotas=[{"name": RQ, "maxAmount": 5, "validDuration": "1h"}],
                minDeduplicationDuration="2s")
    assert await h.take(1, dedup_id="r") == 1
    h.clock.t += 1.9
    assert await h.take(1, dedup_id="r") == 1
    assert await h.take(4, best_effort=True) == 4  # so the retry above cost nothing
    h.clock.t += 0.1  # 2 s after the first call: the id is forgotten and charged anew
    assert await h.take(1, dedup_id="r") == 0


async def test_default_dedup_window_is_one_second() -> None:
    h = rate(5, "1h")
    assert await h.take(1, dedup_id="r") == 1
    h.clock.t += 0.99
    assert await h.take(1, dedup_id="r") == 1
    assert await h.take(5, best_effort=True) == 4
    h.clock.t += 0.01
    assert await h.take(1, dedup_id="r") == 0


async def test_empty_dedup_id_never_deduplicates() -> None:
    h = rate(2)
    assert await h.take(1, dedup_id="") == 1
    assert await h.take(1, dedup_id="") == 1
    assert await h.take(1, dedup_id="") == 0


async def test_one_dedup_id_on_two_quotas_charges_both() -> None:
    h = Harness(quotas=[{"name": RQ, "maxAmount": 1, "validDuration": "1s"},
                        {"name": "other.instance.ns", "maxAmount": 1, "validDuration": "1s"}])
    assert await h.take(1, dedup_id="req") == 1
    assert await h.take(1, name="other.instance.ns", dedup_id="req") == 1
    assert await h.take(1, name="other.instance.ns") == 0


# ---- unconfigured quotas and memory ---------------------------------------------------

async def test_an_unconfigured_quota_is_granted_in_full_warned_once_counted_always() -> None:
    h = rate(1)
    for _ in range(3):
        assert await h.take(7, name="typo.instance.istio-system") == 7
    warnings = [kw for level, _, kw in h.log.records if level == "warning"]
    assert warnings == [{"quota": "typo.instance.istio-system",
                         "handler": "quotas.istio-system"}]
    assert h.errors == 3
    assert await h.take(1) == 1 and h.errors == 3


async def test_idle_windows_are_forgotten_counters_are_kept() -> None:
    h = Harness(quotas=[{"name": RQ, "maxAmount": 5, "validDuration": "10s"},
                        {"name": "total.instance.ns", "maxAmount": 5}])
    for i in range(100):
        assert await h.take(1, user=f"u{i}") == 1
    assert await h.take(1, name="total.instance.ns", user="u0") == 1
    assert h.adapter.key_count() == 101
    h.clock.t += 10.6
    assert await h.take(1, user="u0") == 1
    assert h.adapter.key_count() == 2  # u0's fresh window and the counter
    assert await h.take(5, best_effort=True, name="total.instance.ns", user="u0") == 4


async def test_a_busy_window_is_not_forgotten() -> None:
    h = rate(1, "10s")
    assert await h.take(1, user="a") == 1
    h.clock.t += 5
    assert await h.take(1, user="b") == 1
    assert h.adapter.key_count() == 2
    assert await h.take(1, user="a") == 0


# ---- params ---------------------------------------------------------------------------

@pytest.mark.parametrize(("params", "words"), [
    ({"quotas": [{"name": RQ}, {"name": RQ}]}, ["quotas", "defined twice"]),
    ({"quotas": [{"maxAmount": 1}]}, ["quotas.0.name", "Field required"]),
    ({"quotas": [{"name": RQ, "maxAmount": -1}]}, ["quotas.0.maxAmount"]),
    ({"quotas": [{"name": RQ, "validDuration": "soon"}]}, ["validDuration", "invalid duration"]),
    ({"quotas": [{"name": RQ, "overrides": [{"dimension": {"a": "b"}}]}]},
     ["quotas.0.overrides.0.dimension", "Extra inputs are not permitted"]),
    ({"quotas": [{"name": RQ, "overrides": [{"maxAmount": 1, "validDuration": "-1s"}]}]},
     ["quotas.0.overrides.0.validDuration", "negative"]),
    ({"minDeduplicationDuration": "0s"}, ["minDeduplicationDuration", "greater than 0"]),
    ({"quota": []}, ["quota", "Extra inputs are not permitted"]),
])
def test_bad_params_name_the_field(params: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        MemQuotaParams.model_validate(params)
    for word in words:
        assert word in str(info.value)


async def test_istio_handler_yaml_loads_unchanged() -> None:
    doc = yaml.safe_load(f"""
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: quotahandler, namespace: istio-system}}
spec:
  compiledAdapter: memquota
  params:
    quotas:
    - name: {RQ}
      maxAmount: 500
      validDuration: 1s
      overrides:
      - dimensions:
          destination: reviews
        maxAmount: 1
        validDuration: 5s
""")
    params = MemQuotaParams.model_validate(doc["spec"]["params"])
    assert params.min_deduplication_duration == dt.timedelta(seconds=1)
    h = Harness(**doc["spec"]["params"])
    assert await h.take(3, best_effort=True, destination="reviews") == 1
    assert await h.take(3, best_effort=True, destination="ratings") == 3


def test_registers_through_the_hook() -> None:
    plugins = load_plugins(extra=[memquota], entry_points=False)
    assert plugins.adapters.get("memquota") is MemQuotaAdapter
    assert MemQuotaAdapter.templates == frozenset({"quota"})
