"""The hub's Prometheus metrics (names fixed by docs/metrics.md; rename none).

Metrics live in a registry owned by the hub instance, never at module level, so tests and
several hubs in one process do not collide. Adapters receive the same registry.
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)


class Metrics:
    """Every metric the hub's own code updates."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.checks = Counter("mixerhub_checks", "Checks answered.", ["source", "outcome"],
                              registry=r)
        self.check_duration = Histogram(
            "mixerhub_check_duration_seconds", "Server time per check.", ["source"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.cache_hits = Counter("mixerhub_decision_cache_hits", "Hub decision cache hits.",
                                  registry=r)
        self.cache_misses = Counter("mixerhub_decision_cache_misses",
                                    "Hub decision cache misses.", registry=r)
        self.reports = Counter("mixerhub_reports", "Report records (one per bag or entry).",
                               ["source"], registry=r)
        self.quota_requests = Counter("mixerhub_quota_requests", "Quota allocations.",
                                      ["outcome"], registry=r)
        self.rule_failures = Counter("mixerhub_rule_failures",
                                     "Evaluation or adapter failures by rule.",
                                     ["rule", "policy"], registry=r)
        self.adapter_errors = Counter("mixerhub_adapter_errors", "Adapter errors.", ["handler"],
                                      registry=r)
        self.config_reloads = Counter("mixerhub_config_reloads", "Config reload attempts.",
                                      ["result"], registry=r)
        self.kafka_records = Counter("mixerhub_kafka_records", "Kafka delivery by result.",
                                     ["handler", "result"], registry=r)
        self.kafka_buffered = Gauge("mixerhub_kafka_buffered_records", "Kafka records waiting.",
                                    ["handler"], registry=r)
        self.kafka_spool_bytes = Gauge("mixerhub_kafka_spool_bytes",
                                       "Bytes of Kafka records in the on-disk spool.",
                                       ["handler"], registry=r)
        self.decision_events = Counter("mixerhub_decision_events",
                                       "Check decisions recorded, by sink and result "
                                       "(written, dropped, failed).", ["sink", "result"],
                                       registry=r)
        self.shed = Counter("mixerhub_shed", "Checks refused by load shedding.", registry=r)
        self.inflight_checks = Gauge("mixerhub_inflight_checks",
                                     "Checks being answered now (load shedding bounds them).",
                                     registry=r)
        self.queue_latency = Gauge("mixerhub_queue_latency_seconds",
                                   "Event-loop lag last measured: how long ready work waits "
                                   "(load shedding compares it with its threshold).",
                                   registry=r)
        self.inflight_reports = Gauge("mixerhub_inflight_reports",
                                      "Report and access-log messages being dispatched now.",
                                      registry=r)
        self.waiting_reports = Gauge("mixerhub_waiting_reports",
                                     "Report and access-log messages waiting for a dispatch "
                                     "slot (backpressure).", registry=r)
        self.tls_reloads = Counter("mixerhub_tls_reloads",
                                   "Reloads of changed TLS files, by result (ok, error).",
                                   ["result"], registry=r)
        self.tls_cert_expiry = Gauge("mixerhub_tls_cert_expiry_timestamp_seconds",
                                     "When the serving certificate expires (Unix time).",
                                     registry=r)
        self.bad_requests = Counter("mixerhub_bad_requests",
                                    "Requests rejected as malformed (INVALID_ARGUMENT).",
                                    ["service", "method"], registry=r)
        self.shadow_denials = Counter("mixerhub_shadow_denials",
                                      "Denials by shadow rules (logged, not enforced).",
                                      ["rule"], registry=r)
        self.up = Gauge("mixerhub_ready", "1 once config is loaded and gRPC serves.", registry=r)
        _BY_REGISTRY[r] = weakref.ref(self)


# Adapters are handed the registry only; metrics_for finds the hub's collectors on it.
# Weak both ways: a Metrics holds its registry, so a strong value would keep both alive.
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, weakref.ref[Metrics]] = (
    weakref.WeakKeyDictionary())


def metrics_for(registry: CollectorRegistry) -> Metrics:
    """The :class:`Metrics` of the hub that owns ``registry`` (made on the spot for a
    registry no hub owns, as in an adapter's unit test)."""
    ref = _BY_REGISTRY.get(registry)
    found = ref() if ref is not None else None
    return found if found is not None else Metrics(registry)
