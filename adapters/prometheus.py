"""The ``prometheus`` adapter: metric instances as counters, gauges and histograms on the
hub's own ``/metrics``.

Params follow Istio 1.4 (``metrics[].instance_name``, ``label_names``, ``buckets`` …);
Istio's own configs mix snake_case and camelCase keys, so both spellings are accepted
everywhere, as protobuf's JSON reader did. See ``docs/adapters/prometheus.md``.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import datetime as dt
import json
import math
import re
import weakref
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar, Literal

from prometheus_client import CollectorRegistry
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)
from prometheus_client.utils import floatToGoString
from pydantic import AliasChoices, BaseModel, Field, model_validator

from mixerhub import hookimpl
from mixerhub.adapter import AdapterEnv, BaseAdapter, Params, Status
from mixerhub.adapters._params import Duration
from mixerhub.config.files import ConfigError
from mixerhub.jsonform import to_json
from mixerhub.plugins import AdapterRegistry
from mixerhub.templates.instance import Instance

Kind = Literal["GAUGE", "COUNTER", "DISTRIBUTION"]

#: client_golang's DefBuckets, which Istio used for a DISTRIBUTION without ``buckets``.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def _names(*names: str) -> AliasChoices:
    """Keys accepted for one field: the camelCase JSON name first (used in errors)."""
    return AliasChoices(*names)


def safe_name(text: str) -> str:
    """Istio's Prometheus-safe spelling: no leading "/", "/", "." and " " → "_", no "-"."""
    return text.removeprefix("/").replace("/", "_").replace(".", "_").replace(
        " ", "_").replace("-", "")


# ---- params ------------------------------------------------------------------------------

class LinearBuckets(Params):
    num_finite_buckets: int = Field(ge=0, validation_alias=_names(
        "numFiniteBuckets", "num_finite_buckets"), description="buckets between the bounds")
    width: float = Field(gt=0, description="the width of each finite bucket")
    offset: float = Field(0.0, description="the first upper bound")

    def upper_bounds(self) -> tuple[float, ...]:
        """Upper bounds offset + width·i for i = 0 … numFiniteBuckets."""
        return tuple(self.offset + self.width * i for i in range(self.num_finite_buckets + 1))


class ExponentialBuckets(Params):
    num_finite_buckets: int = Field(ge=0, validation_alias=_names(
        "numFiniteBuckets", "num_finite_buckets"), description="buckets between the bounds")
    growth_factor: float = Field(gt=1, validation_alias=_names(
        "growthFactor", "growth_factor"), description="each bound over the one before")
    scale: float = Field(gt=0, description="the first upper bound")

    def upper_bounds(self) -> tuple[float, ...]:
        """Upper bounds scale·growthFactor^i for i = 0 … numFiniteBuckets."""
        return tuple(self.scale * self.growth_factor ** i
                     for i in range(self.num_finite_buckets + 1))


class ExplicitBuckets(Params):
    bounds: list[float] = Field(min_length=1, description="the upper bounds, strictly "
                                                         "increasing")

    def upper_bounds(self) -> tuple[float, ...]:
        return tuple(self.bounds)


class BucketsDefinition(Params):
    """Exactly one of the three ways to give a histogram's bucket bounds."""

    linear_buckets: LinearBuckets | None = Field(None, validation_alias=_names(
        "linearBuckets", "linear_buckets"), description="evenly spaced bounds")
    exponential_buckets: ExponentialBuckets | None = Field(None, validation_alias=_names(
        "exponentialBuckets", "exponential_buckets"), description="geometric bounds")
    explicit_buckets: ExplicitBuckets | None = Field(None, validation_alias=_names(
        "explicitBuckets", "explicit_buckets"), description="listed bounds")

    @model_validator(mode="after")
    def _one_definition(self) -> BucketsDefinition:
        given = [d for d in (self.linear_buckets, self.exponential_buckets,
                             self.explicit_buckets) if d is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of linearBuckets, exponentialBuckets, "
                             f"explicitBuckets (got {len(given)})")
        _check_bounds(given[0].upper_bounds())
        return self

    def upper_bounds(self) -> tuple[float, ...]:
        chosen = self.linear_buckets or self.exponential_buckets or self.explicit_buckets
        assert chosen is not None  # the validator saw to it
        return chosen.upper_bounds()


def _check_bounds(bounds: tuple[float, ...]) -> None:
    if not all(math.isfinite(b) for b in bounds):
        raise ValueError("bucket bounds must be finite numbers")
    if any(a >= b for a, b in zip(bounds, bounds[1:], strict=False)):
        raise ValueError("bucket bounds must be strictly increasing")


class MetricInfo(Params):
    """One Prometheus metric and the metric instances that feed it."""

    namespace: str = Field("istio", description='prefix of the name ("" for none)')
    name: str = Field("", description="the metric's name; default: instance_name made safe")
    instance_name: str = Field(min_length=1, validation_alias=_names(
        "instanceName", "instance_name"), description="full name of the metric instance "
                                                      "that feeds it")
    description: str = Field("", description="HELP text; default: the name")
    kind: Kind = Field(description="COUNTER (adds), GAUGE (sets) or DISTRIBUTION "
                                   "(a histogram)")
    label_names: list[str] = Field(default_factory=list, validation_alias=_names(
        "labelNames", "label_names"), description="the instance dimensions used as labels")
    buckets: BucketsDefinition | None = Field(
        None, description="DISTRIBUTION bounds; default: Prometheus's default buckets")

    @model_validator(mode="after")
    def _valid_names(self) -> MetricInfo:
        if not _METRIC_NAME.match(self.full_name):
            raise ValueError(f"{self.full_name!r} is not a valid Prometheus metric name")
        labels = self.labels
        for label in labels:
            _check_label(label, self.kind)
        if len(set(labels)) != len(labels):
            raise ValueError(f"metric {self.full_name!r}: label names repeat: {labels}")
        return self

    @property
    def full_name(self) -> str:
        name = safe_name(self.name or self.instance_name)
        return f"{safe_name(self.namespace)}_{name}" if self.namespace else name

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(safe_name(n) for n in self.label_names)

    def upper_bounds(self) -> tuple[float, ...]:
        return self.buckets.upper_bounds() if self.buckets else DEFAULT_BUCKETS


def _check_label(label: str, kind: str) -> None:
    if not _LABEL_NAME.match(label) or label.startswith("__"):
        raise ValueError(f"{label!r} is not a valid Prometheus label name")
    if kind == "DISTRIBUTION" and label == "le":
        raise ValueError('"le" is reserved for histogram buckets')


class ExpirationPolicy(Params):
    metrics_expiry_duration: Duration = Field(validation_alias=_names(
        "metricsExpiryDuration", "metrics_expiry_duration"),
        description="drop a label set not updated for this long")
    expiry_check_interval_duration: Duration | None = Field(None, validation_alias=_names(
        "expiryCheckIntervalDuration", "expiry_check_interval_duration"),
        description="how often to look; default: half the expiry duration")

    @model_validator(mode="after")
    def _positive(self) -> ExpirationPolicy:
        if self.metrics_expiry_duration <= dt.timedelta(0):
            raise ValueError("metricsExpiryDuration must be positive")
        if self.interval <= dt.timedelta(0):
            raise ValueError("expiryCheckIntervalDuration must be positive")
        return self

    @property
    def interval(self) -> dt.timedelta:
        return self.expiry_check_interval_duration or self.metrics_expiry_duration / 2


class PrometheusParams(Params):
    """The ``params`` of a ``compiledAdapter: prometheus`` handler."""

    metrics: list[MetricInfo] = Field(default_factory=list,
                                      description="the metrics this handler exports")
    metrics_expiration_policy: ExpirationPolicy | None = Field(
        None, validation_alias=_names("metricsExpirationPolicy", "metrics_expiration_policy"),
        description="optional: forget label sets that stop being updated")

    @model_validator(mode="after")
    def _unique_names(self) -> PrometheusParams:
        seen: set[str] = set()
        for info in self.metrics:
            if info.full_name in seen:
                raise ValueError(f"metric {info.full_name!r} is defined twice")
            seen.add(info.full_name)
        return self


# ---- collectors: one per metric, holding its label sets ---------------------------------

LabelValues = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Definition:
    """What makes two handlers' versions of a metric the same metric."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...] = ()


class _Family:
    """A custom collector: plain dicts keyed by label values, touched times for expiry.
    The hub's report path is single-threaded; scrapes copy before iterating."""

    def __init__(self, definition: _Definition) -> None:
        self.definition = definition
        self.series: dict[LabelValues, Any] = {}
        self.touched: dict[LabelValues, float] = {}

    def update(self, labels: LabelValues, value: float, now: float) -> None:
        self._apply(labels, value)
        self.touched[labels] = now

    def _apply(self, labels: LabelValues, value: float) -> None:
        raise NotImplementedError

    def expire(self, cutoff: float) -> int:
        stale = [labels for labels, at in list(self.touched.items()) if at < cutoff]
        for labels in stale:
            self.series.pop(labels, None)
            self.touched.pop(labels, None)
        return len(stale)

    def describe(self) -> list[Metric]:
        return [self._empty()]

    def collect(self) -> list[Metric]:
        family = self._empty()
        for labels, state in list(self.series.items()):
            self._add(family, labels, state)
        return [family]

    def _empty(self) -> Any:
        raise NotImplementedError

    def _add(self, family: Any, labels: LabelValues, state: Any) -> None:
        family.add_metric(labels, state)


class _Counter(_Family):
    def _apply(self, labels: LabelValues, value: float) -> None:
        if not value >= 0 or math.isinf(value):  # also rejects NaN
            raise ValueError(f"a counter only grows; cannot add {value!r}")
        self.series[labels] = self.series.get(labels, 0.0) + value

    def _empty(self) -> CounterMetricFamily:
        d = self.definition
        return CounterMetricFamily(d.name, d.help, labels=d.labels)


class _Gauge(_Family):
    def _apply(self, labels: LabelValues, value: float) -> None:
        self.series[labels] = value

    def _empty(self) -> GaugeMetricFamily:
        d = self.definition
        return GaugeMetricFamily(d.name, d.help, labels=d.labels)


class _Histogram(_Family):
    """State per label set: a count per bucket (the last is +Inf) and then the sum."""

    def __init__(self, definition: _Definition) -> None:
        super().__init__(definition)
        # The "le" texts as Prometheus's own clients print them, computed once, not per scrape.
        self._uppers = [_go_float(b) for b in definition.bounds] + ["+Inf"]

    def _apply(self, labels: LabelValues, value: float) -> None:
        if not math.isfinite(value):
            raise ValueError(f"cannot observe {value!r}")
        bounds = self.definition.bounds
        state = self.series.get(labels)
        if state is None:
            state = self.series[labels] = [0] * (len(bounds) + 1) + [0.0]
        state[bisect.bisect_left(bounds, value)] += 1  # buckets are "less or equal"
        state[-1] += value

    def _empty(self) -> HistogramMetricFamily:
        d = self.definition
        return HistogramMetricFamily(d.name, d.help, labels=d.labels)

    def _add(self, family: Any, labels: LabelValues, state: Any) -> None:
        cumulative, running = [], 0
        for upper, count in zip(self._uppers, state[:-1], strict=True):
            running += count
            cumulative.append((upper, running))
        family.add_metric(labels, cumulative, state[-1])


def _go_float(value: float) -> str:
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]  # untyped upstream
    return text


_FAMILIES: dict[str, type[_Family]] = {
    "COUNTER": _Counter, "GAUGE": _Gauge, "DISTRIBUTION": _Histogram}


# ---- leases: who owns a metric name in a registry ---------------------------------------

@dataclasses.dataclass(eq=False)
class _Lease:
    family: _Family
    handler: str
    holders: int = 1


# Keyed by registry (weakly), so hubs in one process never share metrics. A reload starts
# the new handlers before it stops the old ones; the lease lets the new handler of the same
# name take over a metric (and keep its counts) instead of failing as a duplicate.
_LEASES: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Lease]] = (
    weakref.WeakKeyDictionary())


class _Leases:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.table = _LEASES.setdefault(registry, {})

    def acquire(self, definition: _Definition, handler: str) -> _Lease:
        current = self.table.get(definition.name)
        if current is None:
            return self._register(definition, handler)
        if current.handler != handler:
            raise ConfigError(
                f"handler {handler!r}: prometheus metric {definition.name!r} is already "
                f"defined by handler {current.handler!r}; metric names must be unique")
        if current.family.definition == definition:
            current.holders += 1
            return current
        # Same handler, new shape (a reload changed kind, labels or buckets): the new
        # definition takes the name; the old handler writes to a detached family until it stops.
        self.registry.unregister(current.family)
        del self.table[definition.name]
        return self._register(definition, handler)

    def _register(self, definition: _Definition, handler: str) -> _Lease:
        family = _FAMILIES[definition.kind](definition)
        try:
            self.registry.register(family)
        except ValueError as exc:
            raise ConfigError(f"handler {handler!r}: prometheus metric {definition.name!r} "
                              f"clashes with a metric the hub already exports: {exc}") from None
        lease = self.table[definition.name] = _Lease(family, handler)
        return lease

    def release(self, lease: _Lease) -> None:
        lease.holders -= 1
        name = lease.family.definition.name
        if lease.holders <= 0 and self.table.get(name) is lease:
            self.registry.unregister(lease.family)
            del self.table[name]


# ---- routing: instance → label values → family ------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Route:
    family: _Family
    keys: tuple[tuple[str, str], ...]  # per label: (configured name, safe name)

    def record(self, instance: Instance, now: float) -> None:
        dimensions = instance.get("dimensions") or {}
        labels = tuple(label_text(_dimension(dimensions, raw, safe)) for raw, safe in self.keys)
        self.family.update(labels, metric_value(instance.get("value")), now)


def _dimension(dimensions: Any, raw: str, safe: str) -> Any:
    value = dimensions.get(raw)
    return dimensions.get(safe) if value is None else value


def metric_value(value: Any) -> float:
    """An instance value as a sample: numbers, DURATION in seconds, numeric text."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a metric value")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float, str)):
        return float(value)
    raise ValueError(f"a {type(value).__name__} is not a metric value")


def label_text(value: Any) -> str:
    """A dimension value as label text, spelled as Istio's Go code spelled it
    (``true``, ``200``, ``0.5``); a missing dimension is ``""``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    data = to_json(value)
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


def _float_text(value: float) -> str:
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    text = format(Decimal(repr(value)), "f")  # shortest digits, never an exponent
    return text.removesuffix(".0") if "." in text else text


# ---- the adapter -------------------------------------------------------------------------

class PrometheusAdapter(BaseAdapter):
    """Exports metric instances on the hub's Prometheus registry."""

    name: ClassVar[str] = "prometheus"
    Params: ClassVar[type[BaseModel]] = PrometheusParams
    templates: ClassVar[frozenset[str]] = frozenset({"metric"})

    def __init__(self, params: PrometheusParams, env: AdapterEnv) -> None:
        super().__init__(params, env)
        self._leases: list[_Lease] = []
        self._routes: dict[str, list[_Route]] = {}
        self._expiry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register every metric, or none: a duplicate name raises ConfigError."""
        leases = _Leases(self.env.registry)
        try:
            for info in self.params.metrics:
                self._add_metric(leases, info)
        except ConfigError:
            self._release_all()
            raise
        policy = self.params.metrics_expiration_policy
        if policy is not None:
            self._expiry = asyncio.create_task(self._expire_forever(policy))
        self.status = Status.OK

    def _add_metric(self, leases: _Leases, info: MetricInfo) -> None:
        bounds = info.upper_bounds() if info.kind == "DISTRIBUTION" else ()
        definition = _Definition(info.full_name, info.kind, info.description or info.full_name,
                                 info.labels, bounds)
        lease = leases.acquire(definition, self.env.handler)
        self._leases.append(lease)
        route = _Route(lease.family, tuple(zip(info.label_names, info.labels, strict=True)))
        self._routes.setdefault(info.instance_name, []).append(route)

    async def stop(self) -> None:
        """Unregister this handler's metrics (unless a newer handler took them over)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._release_all()
        self.status = Status.NOT_READY

    def _release_all(self) -> None:
        leases = _Leases(self.env.registry)
        for lease in self._leases:
            leases.release(lease)
        self._leases.clear()
        self._routes.clear()

    async def report(self, instances: Sequence[Instance]) -> None:
        now = self.env.clock.monotonic()
        errors: list[str] = []
        for instance in instances:
            routes = self._routes.get(instance.name)
            if not routes:
                errors.append(f"no metric is fed by instance {instance.name!r}")
            for route in routes or ():
                try:
                    route.record(instance, now)
                except (ValueError, OverflowError) as exc:
                    errors.append(f"{route.family.definition.name}: {exc}")
        if errors:
            self._count_errors(errors)

    def _count_errors(self, errors: list[str]) -> None:
        # One log line per batch, not per instance: a bad rule can fire at request rate.
        for _ in errors:
            self.env.on_error()
        self.env.logger.warning("prometheus: values skipped", handler=self.env.handler,
                                count=len(errors), error=errors[-1])

    def expire(self) -> int:
        """Drop label sets not updated within the expiry duration; returns how many."""
        policy = self.params.metrics_expiration_policy
        if policy is None:
            return 0
        cutoff = self.env.clock.monotonic() - policy.metrics_expiry_duration.total_seconds()
        return sum(lease.family.expire(cutoff) for lease in self._leases)

    async def _expire_forever(self, policy: ExpirationPolicy) -> None:
        interval = policy.interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            self.expire()


@hookimpl
def mixerhub_register_adapters(registry: AdapterRegistry) -> None:
    registry.register(PrometheusAdapter)
