"""The Mixer client's own Prometheus metrics (``mixerhub_proxy_*``, docs/proxy.md).

One object per client, on a registry it is given (an app may pass prometheus_client's
default ``REGISTRY``) or its own; never module-level.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0)


class ProxyMetrics:
    """Every metric the client, the proxy and the middlewares update."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mixerhub_proxy_requests", "Requests decided, by outcome (allowed, denied, "
            "fail_open, fail_closed).", ["outcome"], registry=r)
        self.cache_hits = Counter("mixerhub_proxy_check_cache_hits",
                                  "Checks answered by the check cache.", registry=r)
        self.cache_misses = Counter("mixerhub_proxy_check_cache_misses",
                                    "Checks the check cache could not answer.", registry=r)
        self.cache_entries = Gauge("mixerhub_proxy_check_cache_entries",
                                   "Verdicts held by the check cache.", registry=r)
        self.hub_calls = Counter(
            "mixerhub_proxy_hub_calls", "RPCs to the hub by kind (check, quota, report) "
            "and result (ok, error).", ["rpc", "result"], registry=r)
        self.hub_latency = Histogram("mixerhub_proxy_hub_call_duration_seconds",
                                     "Time per RPC to the hub.", ["rpc"],
                                     buckets=_LATENCY_BUCKETS, registry=r)
        self.fail_policy = Counter(
            "mixerhub_proxy_fail_policy", "Requests decided by the fail policy because the "
            "hub could not answer.", ["policy"], registry=r)
        self._quota_metrics(r)
        self._report_metrics(r)
        self.quotaspec_fetches = Counter("mixerhub_proxy_quotaspec_fetches",
                                         "QuotaSpec fetches from the hub.", ["result"],
                                         registry=r)
        self.tls_reloads = Counter("mixerhub_proxy_tls_reloads",
                                   "Reloads of changed hub TLS files, by result (ok, error).",
                                   ["result"], registry=r)
        self.upstream_errors = Counter("mixerhub_proxy_upstream_errors",
                                       "Requests the upstream did not answer.", ["kind"],
                                       registry=r)

    def _quota_metrics(self, r: CollectorRegistry) -> None:
        self.quota_units = Counter(
            "mixerhub_proxy_quota_units", "Quota units handed to requests, by where they "
            "came from (prefetched, fetched) or denied (exhausted).", ["result"], registry=r)
        self.quota_fetches = Counter(
            "mixerhub_proxy_quota_fetches", "Quota fetches from the hub (granted, partial, "
            "exhausted, error).", ["result"], registry=r)
        self.quota_fetched_units = Counter("mixerhub_proxy_quota_fetched_units",
                                           "Quota units the hub granted to this client.",
                                           registry=r)
        self.quota_expired_units = Counter("mixerhub_proxy_quota_expired_units",
                                           "Prefetched units that expired unused.", registry=r)

    def _report_metrics(self, r: CollectorRegistry) -> None:
        self.reports = Counter(
            "mixerhub_proxy_reports", "Report records by result (sent, dropped: buffer "
            "full or shut down, rejected: the hub refused or the value cannot be encoded).",
            ["result"], registry=r)
        self.report_batches = Counter("mixerhub_proxy_report_batches",
                                      "Report RPCs by result (ok, error).", ["result"],
                                      registry=r)
        self.report_retries = Counter("mixerhub_proxy_report_retries",
                                      "Report RPCs retried after a failure.", registry=r)
        self.reports_buffered = Gauge("mixerhub_proxy_reports_buffered",
                                      "Report records waiting to be sent.", registry=r)
