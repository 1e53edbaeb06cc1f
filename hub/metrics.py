"""The hub's Prometheus metrics (names fixed by docs/metrics.md; rename none).

Metrics live in a registry owned by the hub instance, never at module level, so tests and
several hubs in one process do not collide. Adapters receive the same registry.
"""

from __future__ import annotations

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
        self.shed = Counter("mixerhub_shed", "Checks refused by load shedding.", registry=r)
        self.bad_requests = Counter("mixerhub_bad_requests",
                                    "Requests rejected as malformed (INVALID_ARGUMENT).",
                                    ["service", "method"], registry=r)
        self.shadow_denials = Counter("mixerhub_shadow_denials",
                                      "Denials by shadow rules (logged, not enforced).",
                                      ["rule"], registry=r)
        self.up = Gauge("mixerhub_ready", "1 once config is loaded and gRPC serves.", registry=r)
