"""Istio 1.4's own configs load unchanged (or fail only with a clear "not supported"), and
the bookinfo policy samples decide as Istio's task docs describe, over the Mixer v1 API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mixerhub.app import Hub, Settings
from mixerhub.config.errors import ConfigErrors
from mixerhub.config.loader import load_config
from mixerhub.plugins import load_plugins
from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.verdict import QuotaRequest

DATA = Path(__file__).resolve().parents[1] / "data" / "istio-1.4"
FILES = sorted(DATA.rglob("*.yaml"))
UNSUPPORTED = re.compile(r"(is not supported|are not supported)")
DANGLING = re.compile(r"no (handler|instance) '([^'.]+)")


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


def defined_names(folder: Path) -> set[str]:
    text = "\n".join(p.read_text() for p in folder.glob("*.yaml"))
    return set(re.findall(r"^\s+name: ([\w-]+)\s*$", text, flags=re.M))


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_each_file_alone_loads_or_fails_only_as_documented(path: Path, plugins) -> None:
    """Allowed failures: "not supported" (kubernetesenv, out-of-process adapters), references
    to what such a document would have defined, and references to objects that Mixer's test
    data defines in a sibling file (it is loaded as one folder)."""
    try:
        load_config([path], plugins)
        return
    except ConfigErrors as exc:
        errors = exc.errors
    siblings = defined_names(path.parent)
    for error in errors:
        dangling = DANGLING.search(error)
        assert UNSUPPORTED.search(error) or (dangling and dangling.group(2) in siblings), error
    assert any(UNSUPPORTED.search(e) for e in errors) or path.parent.name == "mixer-testdata"


def test_mixer_testdata_as_one_folder(plugins) -> None:
    with pytest.raises(ConfigErrors) as err:
        load_config([DATA / "mixer-testdata"], plugins)
    unsupported = [e for e in err.value.errors if UNSUPPORTED.search(e)]
    assert {Path(e.split(":")[0]).name for e in unsupported} == {"deny.yaml",
                                                                 "kubernetesenv.yaml"}
    for error in err.value.errors:  # the rest only name what the unsupported ones defined
        assert UNSUPPORTED.search(error) or re.search(
            r"no (handler 'denyall'|handler 'kubernetesenv'|instance 'denyrequest)", error), error


def test_unsupported_errors_name_file_line_kind_and_adapter(plugins) -> None:
    with pytest.raises(ConfigErrors) as err:
        load_config([DATA / "mixer-testdata" / "kubernetesenv.yaml"], plugins)
    assert any(re.search(r"kubernetesenv\.yaml:\d+: handler/kubernetesenv: "
                         r"spec\.compiledAdapter: kubernetesenv is not supported", e)
               for e in err.value.errors)
    with pytest.raises(ConfigErrors) as err:
        load_config([DATA / "mixer-testdata" / "deny.yaml"], plugins)
    assert any(re.search(r"deny\.yaml:\d+: handler/denyall: spec\.adapter: out-of-process "
                         r"adapters are not supported", e) for e in err.value.errors)


async def hub_for(*names: str) -> tuple[Hub, MixerClient]:
    paths = tuple(str(DATA / "bookinfo-policy" / n) for n in names)
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=paths, watch=False,
                       cache_size=0))
    await hub.start()
    return hub, MixerClient(f"127.0.0.1:{hub.grpc.port}")


def call(dest_app: str, src_app: str, src_version: str, **more: object) -> dict[str, object]:
    return {"destination.labels": {"app": dest_app}, "destination.service.name": dest_app,
            "source.labels": {"app": src_app, "version": src_version}, **more}


async def test_deny_label_reviews_v3_may_not_call_ratings() -> None:
    hub, client = await hub_for("mixer-rule-deny-label.yaml")
    try:
        v3 = await client.check(call("ratings", "reviews", "v3"))
        v2 = await client.check(call("ratings", "reviews", "v2"))
    finally:
        await client.close()
        await hub.stop()
    assert (v3.verdict.code, v3.verdict.message) == (7, "Not allowed")
    assert v2.verdict.ok


async def test_whitelist_only_v1_and_v2_call_ratings() -> None:
    hub, client = await hub_for("mixer-rule-deny-whitelist.yaml")
    try:
        v1 = await client.check(call("ratings", "reviews", "v1"))
        v3 = await client.check(call("ratings", "reviews", "v3"))
        other = await client.check(call("details", "productpage", "v9"))
    finally:
        await client.close()
        await hub.stop()
    assert v1.verdict.ok and other.verdict.ok
    assert (v3.verdict.code, v3.verdict.message) == (5, "v3 is not whitelisted")


async def test_deny_ip_only_the_whitelisted_range_passes_the_ingress() -> None:
    import ipaddress

    hub, client = await hub_for("mixer-rule-deny-ip.yaml")
    ingress = {"source.labels": {"istio": "ingressgateway"}}
    try:
        inside = await client.check({**ingress, "source.ip": ipaddress.ip_address("10.57.1.2")})
        outside = await client.check({**ingress, "source.ip": ipaddress.ip_address("10.58.1.2")})
    finally:
        await client.close()
        await hub.stop()
    assert inside.verdict.ok
    assert outside.verdict.code == 5 and "10.58.1.2 is not whitelisted" in outside.verdict.message


async def test_productpage_rate_limit_two_per_five_seconds() -> None:
    """Istio's task: productpage gets 2 requests per 5 s; reviews 1 per 5 s."""
    hub, client = await hub_for("mixer-rule-productpage-ratelimit.yaml")
    ask = {"requestcountquota": QuotaRequest(1)}
    try:
        page = [await client.check({"destination.labels": {"app": "productpage"}}, ask)
                for _ in range(3)]
        reviews = [await client.check({"destination.labels": {"app": "reviews"}}, ask)
                   for _ in range(2)]
    finally:
        await client.close()
        await hub.stop()
    assert [r.quotas["requestcountquota"].granted_amount for r in page] == [1, 1, 0]
    assert page[2].verdict.code == 8  # RESOURCE_EXHAUSTED: Envoy answers 429
    assert [r.quotas["requestcountquota"].granted_amount for r in reviews] == [1, 0]


async def test_ratings_rate_limit_reviews_once_per_second() -> None:
    hub, client = await hub_for("mixer-rule-ratings-ratelimit.yaml")
    ask = {"requestcountquota": QuotaRequest(1)}
    try:
        from_reviews = [await client.check(call("ratings", "reviews", "v2"), ask)
                        for _ in range(2)]
        from_other = [await client.check(call("ratings", "productpage", "v1"), ask)
                      for _ in range(5)]
    finally:
        await client.close()
        await hub.stop()
    assert [r.quotas["requestcountquota"].granted_amount for r in from_reviews] == [1, 0]
    assert all(r.quotas["requestcountquota"].granted_amount == 1 for r in from_other)


@pytest.mark.parametrize("algorithm", ["fixed", "rolling"])
async def test_ratings_redis_quota_samples_limit_on_a_real_redis(
        algorithm: str, redis_url: str, tmp_path: Path) -> None:
    """Istio's samples, only redisServerUrl pointed at the test Redis: ratings called from
    reviews gets 50 per 30 s (the first override), from elsewhere 100."""
    sample = DATA / "bookinfo-policy" / f"mixer-rule-ratings-redis-quota-{algorithm}-window.yaml"
    config = tmp_path / sample.name
    config.write_text(sample.read_text().replace("redis-release-master:6379", redis_url))
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(config),),
                       watch=False, cache_size=0))
    await hub.start()
    client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
    ask = {"requestcountquota": QuotaRequest(1)}
    try:
        from_reviews = [await client.check(call("ratings", "reviews", "v2"), ask)
                        for _ in range(51)]
        from_other = await client.check(call("ratings", "productpage", "v1"), ask)
    finally:
        await client.close()
        await hub.stop()
    granted = [r.quotas["requestcountquota"].granted_amount for r in from_reviews]
    assert granted == [1] * 50 + [0]
    assert from_reviews[-1].verdict.code == 8
    assert from_other.quotas["requestcountquota"].granted_amount == 1
