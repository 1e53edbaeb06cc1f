"""QuotaSpec resolution (mixerhub.quotaspec) and GET /v1/quotaspecs on a real hub."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from mixerhub.attributes.bag import AttributeBag
from mixerhub.config.loader import load_config
from mixerhub.plugins import load_plugins
from mixerhub.quotaspec import QuotaRules, QuotaSpecIndex
from mixerhub.verdict import QuotaRequest

ROOT = Path(__file__).resolve().parents[2]
BOOKINFO = ROOT / "tests/data/istio-1.4/bookinfo-policy/mixer-rule-productpage-ratelimit.yaml"
PROXY_POLICY = ROOT / "tests/proxy_filter/data/policy.yaml"

SPECS = """
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpec
metadata: {name: api, namespace: istio-system}
spec:
  rules:
  - match:
    - clause:
        request.url_path: {prefix: /api}
        request.method: {exact: POST}
    - clause:
        request.headers[x-plan]: {regex: "free|trial"}
    quotas:
    - {quota: writes, charge: 5}
  - quotas:
    - {quota: requestcount}
---
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpec
metadata: {name: extra, namespace: shop}
spec:
  rules:
  - quotas:
    - {quota: requestcount, charge: 2}
---
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpecBinding
metadata: {name: bind-api, namespace: istio-system}
spec:
  quotaSpecs: [{name: api}]
  services:
  - {name: reviews, namespace: default}
  - {service: ratings.default.svc.cluster.local}
  - {service: "*.shop.*"}
---
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpecBinding
metadata: {name: bind-extra, namespace: shop}
spec:
  quotaSpecs: [{name: extra}, {name: missing}]
  services:
  - {name: cart}
"""


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> QuotaSpecIndex:
    path = tmp_path_factory.mktemp("qs") / "specs.yaml"
    path.write_text(SPECS)
    return QuotaSpecIndex(load_config([path], load_plugins()))


def names(index: QuotaSpecIndex, service: str, namespace: str | None = None) -> list[str]:
    return [b.name for b in index.specs_for(service, namespace)]


def test_bindings_by_name_host_and_wildcard(index) -> None:
    assert names(index, "reviews", "default") == ["api.istio-system"]
    assert names(index, "reviews.default.svc.cluster.local") == ["api.istio-system"]
    assert names(index, "reviews", "other") == []
    assert names(index, "reviews") == ["api.istio-system"]  # no namespace: any namespace
    assert names(index, "ratings", "default") == ["api.istio-system"]
    assert names(index, "details", "default") == []
    # "*.shop.*" binds every service of namespace shop; cart also by name (binding's ns)
    assert names(index, "cart", "shop") == ["api.istio-system", "extra.shop"]
    assert names(index, "orders", "shop") == ["api.istio-system"]
    assert index.bound and index.dangling == ("missing.shop",)


def test_rules_any_match_entry_every_clause(index) -> None:
    def ask(**values) -> dict[str, QuotaRequest]:
        return index.requests("reviews", "default", values)

    base = {"request.url_path": "/api/books", "request.method": "POST"}
    assert ask(**base) == {"writes": QuotaRequest(5), "requestcount": QuotaRequest(1)}
    assert ask(**{**base, "request.method": "GET"}) == {"requestcount": QuotaRequest(1)}
    assert ask(**{"request.headers": {"x-plan": "trial"}})["writes"] == QuotaRequest(5)
    # regex must match the whole value; a missing or non-string attribute never matches
    assert "writes" not in ask(**{"request.headers": {"x-plan": "trial-2"}})
    assert "writes" not in ask(**{"request.url_path": "/api", "request.method": 1})


def test_charges_of_several_specs_add_up(index) -> None:
    assert index.requests("cart", "shop", {})["requestcount"] == QuotaRequest(3)


def test_requests_for_a_bag_records_what_it_read(index) -> None:
    bag = AttributeBag({"destination.service.name": "reviews",
                        "destination.namespace": "default",
                        "request.headers": {"x-plan": "free"}})
    assert index.requests_for(bag)["writes"] == QuotaRequest(5)
    refs = {r.notation() for r in bag.references()}
    assert {"destination.service.name", "request.headers[x-plan]", "-request.url_path"} <= refs
    host_bag = AttributeBag({"destination.service.host": "ratings.default.svc.cluster.local"})
    assert index.requests_for(host_bag) == {"requestcount": QuotaRequest(1)}
    assert index.requests_for(AttributeBag({})) == {}


def test_istio_bookinfo_quota_spec_loads_and_binds() -> None:
    index = QuotaSpecIndex(load_config([BOOKINFO], load_plugins()))
    assert index.requests("productpage", "default", {}) == {
        "requestcountquota": QuotaRequest(1)}
    assert index.requests("reviews", "default", {}) == {}


def test_rules_round_trip_through_json(index) -> None:
    specs = [b.to_json() for b in index.specs_for("reviews", "default")]
    rules = QuotaRules.from_json(specs)
    values = {"request.url_path": "/api/x", "request.method": "POST"}
    assert rules.requests(values) == index.requests("reviews", "default", values)


async def test_http_endpoint_serves_the_bound_rules(policy_hub) -> None:
    base = f"http://127.0.0.1:{policy_hub.http.port}/v1/quotaspecs"
    async with aiohttp.ClientSession() as s:
        async with s.get(base, params={"service": "reviews", "namespace": "default"}) as r:
            body = await r.json()
        async with s.get(base, params={"service": "details"}) as r:
            unbound = await r.json()
        async with s.get(base) as r:
            assert r.status == 400
    assert body["bound"] is True and body["version"] >= 1
    assert body["specs"] == [{"name": "request-count.istio-system", "rules": [
        {"match": [{"clause": {"request.url_path": {"prefix": "/api"}}}],
         "quotas": [{"quota": "requestcount", "charge": 1}]}]}]
    assert unbound["specs"] == [] and unbound["bound"] is True


async def test_http_endpoint_without_config(hub) -> None:
    url = f"http://127.0.0.1:{hub.http.port}/v1/quotaspecs?service=reviews"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert await r.json() == {"service": "reviews", "namespace": None, "bound": False,
                                  "specs": [], "version": 0}


@pytest.fixture
async def policy_hub():
    from mixerhub.app import Hub, Settings

    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(PROXY_POLICY),),
                       watch=False))
    await hub.start()
    yield hub
    await hub.stop()
