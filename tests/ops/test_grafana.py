"""examples/grafana/mixerhub-dashboard.json: a well-formed dashboard whose every query
asks for metrics that the hub declares and that a running hub really exposes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from mixerhub.metrics import Metrics
from tests.ops.manifests import MIXERHUB, ROOT
from tests.services._proc import free_port, stop, wait_until

DASHBOARD = ROOT / "examples" / "grafana" / "mixerhub-dashboard.json"
QUICKSTART = ROOT / "examples" / "quickstart" / "policy.yaml"
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}
WANTED = {  # what the dashboard must show (docs/metrics.md)
    "mixerhub_checks_total", "mixerhub_decision_cache_hits_total",
    "mixerhub_decision_cache_misses_total", "mixerhub_check_duration_seconds_bucket",
    "mixerhub_reports_total", "mixerhub_kafka_records_total",
    "mixerhub_kafka_buffered_records", "mixerhub_quota_requests_total",
    "mixerhub_config_reloads_total", "mixerhub_shed_total", "mixerhub_adapter_errors_total",
    "mixerhub_rule_failures_total"}
METRIC = re.compile(r"\bmixerhub_[a-zA-Z0-9_]+\b")
SELECTOR = re.compile(r"\b(mixerhub_[a-zA-Z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels() -> list[dict]:
    panels = []
    for panel in _dashboard()["panels"]:
        panels.append(panel)
        panels += panel.get("panels", [])  # collapsed rows hold theirs
    return panels


def _queries() -> list[str]:
    queries = [t["expr"] for p in _panels() for t in p.get("targets", [])]
    for variable in _dashboard()["templating"]["list"]:
        query = variable.get("query")
        queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def declared_series() -> dict[str, set[str]]:
    """Every series name the hub's registry can expose (counters as ``_total``, histograms
    as ``_bucket``/``_sum``/``_count``), with the labels of each."""
    metrics = Metrics(CollectorRegistry())
    series: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count", "_created")}
    for collector in vars(metrics).values():
        kind = getattr(collector, "_type", None)
        if kind not in suffixes:
            continue
        for suffix in suffixes[kind]:
            labels = set(collector._labelnames) | ({"le"} if suffix == "_bucket" else set())
            series[collector._name + suffix] = labels
    return series


def test_the_dashboard_is_importable() -> None:
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    assert dashboard["uid"] and dashboard["title"]
    for panel in _panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert METRIC.search(target["expr"]), target["expr"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_every_panel_has_a_unique_id_and_a_place_on_the_grid() -> None:
    panels = _panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "hwxy"), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_the_dashboard_shows_what_operators_need() -> None:
    used = {name for query in _queries() for name in METRIC.findall(query)}
    assert WANTED <= used, f"no panel for {sorted(WANTED - used)}"
    quantiles = {q for e in _queries() for q in re.findall(r"histogram_quantile\(([0-9.]+)", e)}
    assert {"0.5", "0.99"} <= quantiles


def test_every_query_uses_declared_metrics_and_their_labels() -> None:
    declared = declared_series()
    assert "mixerhub_checks_total" in declared  # the enumeration found the collectors
    for query in _queries():
        names = METRIC.findall(query)
        unknown = set(names) - set(declared)
        assert not unknown, f"{query}: the hub declares no {sorted(unknown)}"
        labels = set().union(*(declared[n] for n in names)) | TARGET_LABELS
        for name, matchers in SELECTOR.findall(query):
            for label in MATCHER.findall(matchers):
                assert label in declared[name] | TARGET_LABELS, f"{query}: {name} has no {label}"
        for grouping in GROUPING.findall(query):
            for label in filter(None, (x.strip() for x in grouping.split(","))):
                assert label in labels, f"{query}: no label {label}"


KAFKA_HANDLER = """
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: accesslog-kafka, namespace: istio-system}
spec:
  compiledAdapter: kafka
  params: {brokers: ["127.0.0.1:%d"], topic: mesh.accesslog, flushTimeoutMs: 0}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: to-kafka, namespace: istio-system}
spec:
  actions: [{handler: accesslog-kafka, instances: [accesslog]}]
---
# A match that cannot be evaluated without source.namespace: counted as a rule failure.
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: fragile, namespace: istio-system}
spec:
  match: source.namespace == "blocked"
  failPolicy: open
  actions: [{handler: deny-admin, instances: [nothing]}]
"""


@pytest.fixture
def hub_metrics_page(tmp_path: Path) -> Iterator[str]:
    """The /metrics page of a real `mixerhub serve` (the quickstart config plus a kafka
    handler whose broker is away, and a rule that fails) after a few checks, quota allocations and reports."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "policy.yaml").write_text(QUICKSTART.read_text() + KAFKA_HANDLER % free_port())
    grpc, http = free_port(), free_port()
    proc = subprocess.Popen([str(MIXERHUB), "serve", "--config", str(config), "--no-watch",
                             "--grpc", f"127.0.0.1:{grpc}", "--http", f"127.0.0.1:{http}",
                             "--log-level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _get(f"http://127.0.0.1:{http}/readyz") is not None, proc, "hub",
                   timeout=60)
        asyncio.run(_traffic(f"127.0.0.1:{grpc}"))
        page = _get(f"http://127.0.0.1:{http}/metrics")
        assert page is not None
        yield page
    finally:
        stop(proc)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


async def _traffic(target: str) -> None:
    from mixerhub.proxy_filter.mixer_client import MixerClient
    from mixerhub.verdict import QuotaRequest

    client = MixerClient(target)
    try:
        caller = {"source.uid": "kubernetes://a", "destination.service.name": "reviews"}
        for _ in range(2):
            await client.check({"request.path": "/reviews/1", **caller},
                               {"requestcount": QuotaRequest(1)})
        await client.check({"request.path": "/admin"})
        await client.report([{**caller, "request.path": "/reviews/1", "response.code": 200}])
    finally:
        await client.close()


def test_a_running_hub_exposes_every_metric_the_dashboard_asks_for(
        hub_metrics_page: str) -> None:
    live = {s.name for family in text_string_to_metric_families(hub_metrics_page)
            for s in family.samples}
    used = {name for query in _queries() for name in METRIC.findall(query)}
    missing = used - live
    assert not missing, f"a running hub exposes no {sorted(missing)}"
    declared = declared_series()
    undeclared = {n for n in live if n.startswith("mixerhub_")} - set(declared)
    assert not undeclared, f"exposed but not found in the registry: {sorted(undeclared)}"
