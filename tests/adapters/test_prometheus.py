"""The prometheus adapter: kinds, buckets, labels, names, ownership, expiry, params."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from prometheus_client import CollectorRegistry, Counter, generate_latest
from pydantic import ValidationError
from structlog.testing import capture_logs

from mixerhub.adapter import AdapterEnv, Status
from mixerhub.adapters.prometheus import (PrometheusAdapter, PrometheusParams,
                                          mixerhub_register_adapters)
from mixerhub.config.files import ConfigError
from mixerhub.plugins import AdapterRegistry
from mixerhub.templates.instance import Instance

DATA = Path(__file__).parent.parent / "data"
COUNT = "requestcount.metric.istio-system"
SIZE = "requestsize.metric.istio-system"


class FakeClock:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def monotonic(self) -> float:
        return self.seconds

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.seconds, dt.timezone.utc)


class Errors:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def env(registry: CollectorRegistry, handler: str = "h.istio-system",
        clock: FakeClock | None = None, errors: Errors | None = None) -> AdapterEnv:
    return AdapterEnv(handler=handler, registry=registry, logger=structlog.get_logger(),
                      clock=clock or FakeClock(), on_error=errors or Errors())


def metric_spec(name: str = "requests_total", kind: str = "COUNTER", instance: str = COUNT,
                labels: tuple[str, ...] = ("code",), **extra: Any) -> dict[str, Any]:
    return {"name": name, "instance_name": instance, "kind": kind,
            "label_names": list(labels), **extra}


async def started(registry: CollectorRegistry, *metrics: dict[str, Any],
                  **kwargs: Any) -> PrometheusAdapter:
    policy = kwargs.pop("policy", None)
    params: dict[str, Any] = {"metrics": list(metrics)}
    if policy:
        params["metricsExpirationPolicy"] = policy
    adapter = PrometheusAdapter(PrometheusParams.model_validate(params), env(registry, **kwargs))
    await adapter.start()
    return adapter


def point(value: Any, name: str = COUNT, **dimensions: Any) -> Instance:
    return Instance(name, "metric", {"value": value, "dimensions": dimensions})


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


# ---- kinds -------------------------------------------------------------------------------

async def test_counter_adds(registry: CollectorRegistry) -> None:
    adapter = await started(registry, metric_spec())
    await adapter.report([point(1, code=200), point(2, code=200), point(5, code=503)])
    await adapter.report([point(0.5, code=200)])
    assert registry.get_sample_value("istio_requests_total", {"code": "200"}) == 3.5
    assert registry.get_sample_value("istio_requests_total", {"code": "503"}) == 5


async def test_a_counter_named_without_total_is_exported_with_it(
        registry: CollectorRegistry) -> None:
    adapter = await started(registry, metric_spec(name="tcp_connections_opened"))
    await adapter.report([point(1, code=1)])
    assert registry.get_sample_value("istio_tcp_connections_opened_total", {"code": "1"}) == 1


async def test_gauge_sets(registry: CollectorRegistry) -> None:
    adapter = await started(registry, metric_spec(name="in_flight", kind="GAUGE"))
    await adapter.report([point(7, code="a"), point(3, code="a"), point(-2.5, code="b")])
    assert registry.get_sample_value("istio_in_flight", {"code": "a"}) == 3
    assert registry.get_sample_value("istio_in_flight", {"code": "b"}) == -2.5


def buckets(registry: CollectorRegistry, name: str, **labels: str) -> dict[str, float]:
    """``le`` → cumulative count of every bucket of one label set."""
    out = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == name + "_bucket" and all(s.labels[k] == v for k, v in labels.items()):
                out[s.labels["le"]] = s.value
    return out


async def test_distribution_observes_into_cumulative_buckets(
        registry: CollectorRegistry) -> None:
    spec = metric_spec(name="request_bytes", kind="DISTRIBUTION", instance=SIZE,
                       buckets={"explicitBuckets": {"bounds": [10, 100]}})
    adapter = await started(registry, spec)
    await adapter.report([point(v, SIZE, code=200) for v in (5, 10, 11, 100, 1000)])
    assert buckets(registry, "istio_request_bytes") == {"10.0": 2, "100.0": 4, "+Inf": 5}
    assert registry.get_sample_value("istio_request_bytes_sum", {"code": "200"}) == 1126
    assert registry.get_sample_value("istio_request_bytes_count", {"code": "200"}) == 5


@pytest.mark.parametrize(("definition", "bounds"), [
    ({"linearBuckets": {"numFiniteBuckets": 3, "width": 10, "offset": 5}},
     ["5.0", "15.0", "25.0", "35.0"]),
    ({"linear_buckets": {"num_finite_buckets": 1, "width": 0.5}}, ["0.0", "0.5"]),
    ({"exponentialBuckets": {"numFiniteBuckets": 2, "scale": 1, "growthFactor": 10}},
     ["1.0", "10.0", "100.0"]),
    ({"exponential_buckets": {"num_finite_buckets": 2, "scale": 0.5, "growth_factor": 2}},
     ["0.5", "1.0", "2.0"]),
    ({"explicit_buckets": {"bounds": [0.25]}}, ["0.25"]),
    (None, ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0",
            "10.0"]),
])
async def test_every_bucket_definition(registry: CollectorRegistry,
                                       definition: dict[str, Any] | None,
                                       bounds: list[str]) -> None:
    spec = metric_spec(name="d", kind="DISTRIBUTION", labels=())
    if definition is not None:
        spec["buckets"] = definition
    adapter = await started(registry, spec)
    await adapter.report([point(0.3)])
    got = buckets(registry, "istio_d")
    assert list(got) == [*bounds, "+Inf"]
    assert got["+Inf"] == 1
    assert [got[b] for b in bounds] == [1 if float(b) >= 0.3 else 0 for b in bounds]


async def test_durations_are_seconds_and_numeric_text_is_a_number(
        registry: CollectorRegistry) -> None:
    spec = metric_spec(name="latency_seconds", kind="DISTRIBUTION", labels=(),
                       buckets={"explicitBuckets": {"bounds": [0.1, 1]}})
    adapter = await started(registry, spec)
    await adapter.report([point(dt.timedelta(milliseconds=250)), point("0.05")])
    assert registry.get_sample_value("istio_latency_seconds_sum") == pytest.approx(0.3)
    assert buckets(registry, "istio_latency_seconds") == {"0.1": 1, "1.0": 2, "+Inf": 2}


# ---- labels ------------------------------------------------------------------------------

async def test_dimensions_become_label_text_as_istio_spelled_it(
        registry: CollectorRegistry) -> None:
    spec = metric_spec(labels=("response_code", "connection_mtls", "ratio", "source_app",
                               "missing"))
    adapter = await started(registry, spec)
    await adapter.report([point(1, response_code=200, connection_mtls=False, ratio=0.5,
                                source_app="productpage", extra="ignored")])
    assert registry.get_sample_value("istio_requests_total", {
        "response_code": "200", "connection_mtls": "false", "ratio": "0.5",
        "source_app": "productpage", "missing": ""}) == 1
    text = generate_latest(registry).decode()
    assert "extra" not in text and "ignored" not in text


async def test_label_names_are_made_safe_but_still_read_their_dimension(
        registry: CollectorRegistry) -> None:
    adapter = await started(registry, metric_spec(labels=("source-app", "dest.app")))
    await adapter.report([point(1, **{"source-app": "a", "dest.app": "b"})])
    assert registry.get_sample_value("istio_requests_total",
                                     {"sourceapp": "a", "dest_app": "b"}) == 1


# ---- names and routing -------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "exported"), [
    ({"namespace": "mesh-one"}, "meshone_requests_total"),
    ({"namespace": ""}, "requests_total"),
    ({"name": "", "namespace": "istio"}, "istio_requestcount_metric_istiosystem_total"),
])
async def test_full_names(registry: CollectorRegistry, extra: dict[str, Any],
                          exported: str) -> None:
    adapter = await started(registry, {**metric_spec(labels=()), **extra})
    await adapter.report([point(1)])
    assert registry.get_sample_value(exported) == 1


async def test_an_instance_feeds_every_metric_naming_it_exactly(
        registry: CollectorRegistry) -> None:
    errors = Errors()
    adapter = await started(registry, metric_spec(name="a_total", labels=()),
                            metric_spec(name="b", kind="GAUGE", labels=()),
                            metric_spec(name="c_total", instance=SIZE, labels=()),
                            errors=errors)
    await adapter.report([point(4), point(1, "requestcount")])
    assert registry.get_sample_value("istio_a_total") == 4
    assert registry.get_sample_value("istio_b") == 4
    assert registry.get_sample_value("istio_c_total") is None  # never fed, never shown
    assert errors.count == 1  # the short name matched nothing


# ---- bad values never lose the rest of the batch -----------------------------------------

@pytest.mark.parametrize("bad", [-1, "many", True, None, float("nan"), {"a": "b"}])
async def test_a_bad_counter_value_is_counted_and_skipped(registry: CollectorRegistry,
                                                          bad: Any) -> None:
    errors = Errors()
    adapter = await started(registry, metric_spec(), errors=errors)
    with capture_logs() as logs:
        await adapter.report([point(1, code=1), point(bad, code=1), point(2, code=1)])
    assert registry.get_sample_value("istio_requests_total", {"code": "1"}) == 3
    assert errors.count == 1
    (log,) = logs
    assert log["event"] == "prometheus: values skipped" and "istio_requests_total" in log["error"]


# ---- one owner per metric name -----------------------------------------------------------

async def test_a_second_handler_defining_the_same_metric_gets_a_clear_error(
        registry: CollectorRegistry) -> None:
    first = await started(registry, metric_spec(), handler="a.istio-system")
    second = PrometheusAdapter(PrometheusParams.model_validate({"metrics": [
        metric_spec(name="only_mine_total"), metric_spec()]}),
        env(registry, handler="b.istio-system"))
    with pytest.raises(ConfigError) as info:
        await second.start()
    message = str(info.value)
    assert "'istio_requests_total'" in message and "'a.istio-system'" in message
    assert "'b.istio-system'" in message
    assert second.status is Status.NOT_READY
    # nothing of the failed handler stays registered, and the first one still works
    assert "only_mine" not in generate_latest(registry).decode()
    await first.report([point(1, code=1)])
    assert registry.get_sample_value("istio_requests_total", {"code": "1"}) == 1


async def test_a_metric_clashing_with_one_the_hub_exports_is_an_error(
        registry: CollectorRegistry) -> None:
    Counter("mixerhub_checks", "Checks answered.", registry=registry)
    adapter = PrometheusAdapter(PrometheusParams.model_validate({"metrics": [
        metric_spec(namespace="mixerhub", name="checks_total")]}), env(registry))
    with pytest.raises(ConfigError, match="'mixerhub_checks_total' clashes with a metric"):
        await adapter.start()


async def test_stop_unregisters_so_another_handler_can_define_the_name(
        registry: CollectorRegistry) -> None:
    old = await started(registry, metric_spec(), handler="a.istio-system")
    await old.report([point(1, code=1)])
    await old.stop()
    assert registry.get_sample_value("istio_requests_total", {"code": "1"}) is None
    assert "istio_requests" not in generate_latest(registry).decode()
    new = await started(registry, metric_spec(kind="GAUGE", name="requests_total"),
                        handler="b.istio-system")
    await new.report([point(9, code=1)])
    assert registry.get_sample_value("istio_requests_total", {"code": "1"}) == 9


async def test_a_reload_of_the_same_handler_takes_the_metric_over_with_its_counts(
        registry: CollectorRegistry) -> None:
    # The hub starts the new snapshot's handlers before it stops the old ones.
    old = await started(registry, metric_spec())
    await old.report([point(5, code=1)])
    new = await started(registry, metric_spec())
    await old.stop()
    await new.report([point(1, code=1)])
    assert registry.get_sample_value("istio_requests_total", {"code": "1"}) == 6
    await new.stop()
    assert registry.get_sample_value("istio_requests_total", {"code": "1"}) is None


async def test_a_reload_that_changes_a_metric_replaces_it(registry: CollectorRegistry) -> None:
    old = await started(registry, metric_spec(labels=("code",)))
    await old.report([point(5, code=1)])
    new = await started(registry, metric_spec(labels=("code", "method")))
    await old.stop()  # must not unregister the new definition
    await new.report([point(1, code=1, method="GET")])
    assert registry.get_sample_value("istio_requests_total",
                                     {"code": "1", "method": "GET"}) == 1
    assert registry.get_sample_value("istio_requests_total", {"code": "1"}) is None


# ---- expiry ------------------------------------------------------------------------------

async def test_label_sets_not_updated_within_the_expiry_are_dropped(
        registry: CollectorRegistry) -> None:
    clock = FakeClock()
    adapter = await started(registry, metric_spec(), clock=clock,
                            policy={"metricsExpiryDuration": "15s",
                                    "expiryCheckIntervalDuration": "1h"})
    await adapter.report([point(1, code="old"), point(1, code="new")])
    clock.seconds += 10
    await adapter.report([point(1, code="new")])
    clock.seconds += 10
    assert adapter.expire() == 1
    assert registry.get_sample_value("istio_requests_total", {"code": "old"}) is None
    assert registry.get_sample_value("istio_requests_total", {"code": "new"}) == 2
    await adapter.stop()


async def test_expiry_runs_on_its_own_until_stop(registry: CollectorRegistry) -> None:
    clock = FakeClock()
    adapter = await started(registry, metric_spec(), clock=clock,
                            policy={"metricsExpiryDuration": "5s",
                                    "expiryCheckIntervalDuration": "0.010s"})
    await adapter.report([point(1, code="x")])
    clock.seconds += 60
    for _ in range(100):  # the sweep runs every 10 ms of real time
        if registry.get_sample_value("istio_requests_total", {"code": "x"}) is None:
            break
        await asyncio.sleep(0.01)
    assert registry.get_sample_value("istio_requests_total", {"code": "x"}) is None
    task = adapter._expiry
    await adapter.stop()
    await asyncio.sleep(0)
    assert task is not None and task.cancelled()


def test_expiry_interval_defaults_to_half_the_duration() -> None:
    params = PrometheusParams.model_validate(
        {"metricsExpirationPolicy": {"metricsExpiryDuration": "1m"}})
    assert params.metrics_expiration_policy is not None
    assert params.metrics_expiration_policy.interval == dt.timedelta(seconds=30)


# ---- params ------------------------------------------------------------------------------

def istio_handler_params(name: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((DATA / "istio_prometheus_handler.yaml").read_text())
    return next(d for d in docs if d["metadata"]["name"] == name)["spec"]["params"]


async def test_istios_sample_handler_loads_and_serves(registry: CollectorRegistry) -> None:
    params = PrometheusParams.model_validate(istio_handler_params("prometheus"))
    assert [m.full_name for m in params.metrics] == [
        "istio_requests_total", "istio_request_duration_seconds", "istio_request_bytes",
        "istio_response_bytes", "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total",
        "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"]
    # the sample mixes explicit_buckets (snake) and exponentialBuckets (camel)
    assert params.metrics[1].upper_bounds()[-1] == 10
    assert params.metrics[2].upper_bounds() == tuple(10.0 ** i for i in range(9))
    adapter = PrometheusAdapter(params, env(registry, handler="prometheus.istio-system"))
    await adapter.start()
    await adapter.report([point(dt.timedelta(milliseconds=30),
                                "requestduration.metric.istio-system", reporter="server")])
    assert registry.get_sample_value("istio_request_duration_seconds_bucket", {
        **{n: "" for n in params.metrics[1].label_names}, "reporter": "server",
        "le": "0.05"}) == 1
    await adapter.stop()


def test_camel_case_keys_load_the_same_as_istios_snake_case() -> None:
    snake = {"metrics": [{"instance_name": COUNT, "kind": "COUNTER", "label_names": ["a"]}],
             "metrics_expiration_policy": {"metrics_expiry_duration": "15s"}}
    camel = {"metrics": [{"instanceName": COUNT, "kind": "COUNTER", "labelNames": ["a"]}],
             "metricsExpirationPolicy": {"metricsExpiryDuration": "15s"}}
    assert PrometheusParams.model_validate(snake) == PrometheusParams.model_validate(camel)


def bad(metric: dict[str, Any]) -> dict[str, Any]:
    return {"metrics": [metric]}


@pytest.mark.parametrize(("params", "message"), [
    (bad(metric_spec(kind="HISTOGRAM")), "Input should be 'GAUGE', 'COUNTER' or 'DISTRIBUTION'"),
    (bad({"kind": "COUNTER"}), "Field required"),
    (bad(metric_spec(buckets={"explicitBuckets": {"bounds": [1, 1]}}, kind="DISTRIBUTION")),
     "strictly increasing"),
    (bad(metric_spec(buckets={"explicitBuckets": {"bounds": []}}, kind="DISTRIBUTION")),
     "at least 1 item"),
    (bad(metric_spec(kind="DISTRIBUTION", buckets={
        "linearBuckets": {"numFiniteBuckets": 1, "width": 1},
        "explicitBuckets": {"bounds": [1]}})), "exactly one of linearBuckets"),
    (bad(metric_spec(kind="DISTRIBUTION", buckets={})), "exactly one of linearBuckets"),
    (bad(metric_spec(kind="DISTRIBUTION", buckets={
        "exponentialBuckets": {"numFiniteBuckets": 2, "scale": 1, "growthFactor": 1}})),
     "greater than 1"),
    (bad(metric_spec(kind="DISTRIBUTION", buckets={
        "linearBuckets": {"numFiniteBuckets": 2, "width": 0}})), "greater than 0"),
    (bad(metric_spec(kind="DISTRIBUTION", labels=("le",))), '"le" is reserved'),
    (bad(metric_spec(labels=("9lives",))), "'9lives' is not a valid Prometheus label name"),
    (bad(metric_spec(labels=("__x",))), "'__x' is not a valid Prometheus label name"),
    (bad(metric_spec(labels=("a", "a"))), "label names repeat"),
    (bad(metric_spec(name="bad!name")), "'istio_bad!name' is not a valid Prometheus metric"),
    ({"metrics": [metric_spec(), metric_spec(instance=SIZE)]},
     "metric 'istio_requests_total' is defined twice"),
    ({"metricsExpirationPolicy": {"metricsExpiryDuration": "soon"}},
     "invalid duration 'soon'"),
    ({"metricsExpirationPolicy": {"metricsExpiryDuration": "0s"}}, "must be positive"),
    (bad({**metric_spec(), "labelName": ["a"]}), "Extra inputs are not permitted"),
])
def test_bad_params_are_clear_errors(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        PrometheusParams.model_validate(params)
    assert message in str(info.value)


def test_every_params_field_is_described() -> None:
    defs = PrometheusParams.model_json_schema()["$defs"]
    schemas = [PrometheusParams.model_json_schema(), *defs.values()]
    for schema in schemas:
        for name, prop in schema.get("properties", {}).items():
            assert prop.get("description"), f"{schema.get('title')}.{name}"


def test_registers_itself_through_the_hook() -> None:
    registry = AdapterRegistry()
    mixerhub_register_adapters(registry)
    assert registry.get("prometheus") is PrometheusAdapter
    assert PrometheusAdapter.templates == {"metric"}
