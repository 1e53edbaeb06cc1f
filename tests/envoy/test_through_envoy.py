"""Real Envoy in front of a real upstream, asking a real hub: ext_authz and Lua modes."""

from __future__ import annotations

import json

import pytest
from aiohttp import ClientSession

from mixerhub.app import Hub
from tests.conftest import scrape
from tests.envoy.conftest import Upstream, eventually, options, running_envoy

MODES = ["ext_authz", "lua"]


@pytest.mark.parametrize("mode", MODES)
async def test_allow_deny_quota_and_header_operations(mode: str, policy_hub: Hub,
                                                       upstream: Upstream) -> None:
    async with running_envoy(options(policy_hub, upstream, mode)) as envoy, \
            ClientSession() as client:
        url = f"http://127.0.0.1:{envoy.port}"
        async with client.get(url + "/hello?x=1", headers={"x-user": "alice"}) as r:
            assert r.status == 200
            echoed = await r.json()
            assert r.headers["x-policy"] == "checked"
        assert echoed["path"] == "/hello?x=1"
        assert echoed["headers"]["x-mixerhub-user"] == "alice"

        async with client.get(url + "/hello", headers={"x-user": "mallory"}) as r:
            assert r.status == 403
            assert await r.text() == "mallory is not welcome here"
        assert not any(s["headers"].get("x-user") == "mallory" for s in upstream.seen)

        statuses = []
        for _ in range(3):
            async with client.get(url + "/spend", headers={"x-user": "greedy"}) as r:
                statuses.append(r.status)
                last = r
                body = await r.text()
        assert statuses == [200, 200, 429]
        assert int(last.headers["retry-after"]) >= 1
        assert last.headers["x-ratelimit-limit"] == "2"
        assert last.headers["x-ratelimit-remaining"] == "0"
        assert "quota is exhausted" in body


@pytest.mark.parametrize("mode", MODES)
async def test_access_log_entries_reach_report_adapters(mode: str, policy_hub: Hub,
                                                         upstream: Upstream) -> None:
    before = (await scrape(policy_hub.http.port)).get(
        'mixerhub_reports_total{source="envoy_als"}', 0)
    async with running_envoy(options(policy_hub, upstream, mode)) as envoy, \
            ClientSession() as client:
        for i in range(5):
            async with client.post(f"http://127.0.0.1:{envoy.port}/logged/{i}",
                                   data=b"x" * 10, headers={"x-user": "alice"}) as r:
                assert r.status == 200

        def logged() -> list[dict]:
            if not policy_hub.access_log.exists():
                return []
            lines = [json.loads(line) for line in policy_hub.access_log.read_text().splitlines()]
            mine = [e for e in lines if str(e.get("path", "")).startswith("/logged/")]
            return mine if len(mine) == 5 else []

        entries = await eventually(logged)
    assert sorted(e["path"] for e in entries) == [f"/logged/{i}" for i in range(5)]
    assert {e["method"] for e in entries} == {"POST"}
    assert {e["code"] for e in entries} == {200}
    assert {e["reporter"] for e in entries} == {"mixerhub-envoy"}
    after = (await scrape(policy_hub.http.port))['mixerhub_reports_total{source="envoy_als"}']
    assert after - before >= 5
    if mode == "lua":  # the Lua filter marks what it answered from its own cache
        assert [e["cache"] for e in entries].count("hit") >= 3


async def test_lua_answers_repeats_from_envoy_memory(policy_hub: Hub,
                                                     upstream: Upstream) -> None:
    workers = 2
    async with running_envoy(options(policy_hub, upstream, "lua"), workers) as envoy, \
            ClientSession() as client:
        before = (await scrape(policy_hub.http.port))['mixerhub_checks_total{outcome="ok",source="http"}']
        for _ in range(100):
            async with client.get(f"http://127.0.0.1:{envoy.port}/same",
                                  headers={"x-user": "alice"}) as r:
                assert r.status == 200
                assert r.headers["x-policy"] == "checked"
        after = (await scrape(policy_hub.http.port))['mixerhub_checks_total{outcome="ok",source="http"}']
    assert 1 <= after - before <= workers
    assert sum(1 for s in upstream.seen if s["path"] == "/same") == 100
    assert all(s["headers"]["x-mixerhub-user"] == "alice" for s in upstream.seen)


ALLOWLIST = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: users, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params: {overrides: [USERS], blacklist: false, cachingInterval: 4s}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: user, namespace: istio-system}
spec: {compiledTemplate: listentry, params: {value: 'request.headers["x-user"] | ""'}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: known-users, namespace: istio-system}
spec:
  actions: [{handler: users, instances: [user]}]
"""


async def test_lua_sees_a_config_change_once_the_cached_verdict_expires(
        tmp_path, upstream: Upstream) -> None:
    from tests.envoy.conftest import start_hub

    hub = await start_hub(tmp_path, ALLOWLIST.replace("USERS", "alice"))
    try:
        async with running_envoy(options(hub, upstream, "lua"), 1) as envoy, \
                ClientSession() as client:
            url = f"http://127.0.0.1:{envoy.port}/cached"

            async def status() -> int:
                async with client.get(url, headers={"x-user": "alice"}) as r:
                    return r.status

            assert await status() == 200  # the verdict (4 s) is now in Envoy's memory
            hub.config_path.write_text(ALLOWLIST.replace("USERS", "bob"))
            assert await hub.reload("test")
            async with client.post(f"http://127.0.0.1:{hub.http.port}/v1/check", json={
                    "attributes": {"request.headers": {"x-user": "alice"}}}) as r:
                assert (await r.json())["status"]["code"] == 5  # the hub decides anew
            assert await status() == 200  # Envoy still reuses its verdict
            denied = await eventually(lambda: _is(status, 404), timeout=30)
            assert denied
    finally:
        await hub.stop()


async def _is(status, wanted: int) -> bool:
    return await status() == wanted


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
async def test_hub_down_follows_the_fail_policy(mode: str, fail_open: bool, policy_hub: Hub,
                                                upstream: Upstream) -> None:
    opts = options(policy_hub, upstream, mode, fail_open=fail_open)
    async with running_envoy(opts) as envoy, ClientSession() as client:
        url = f"http://127.0.0.1:{envoy.port}/while-down"
        await policy_hub.stop()
        statuses = []
        for i in range(5):  # distinct users: nothing is in the Lua cache
            async with client.get(url, headers={"x-user": f"user{i}"}) as r:
                statuses.append(r.status)
    assert statuses == ([200] * 5 if fail_open else [503] * 5)
    reached = sum(1 for s in upstream.seen if s["path"] == "/while-down")
    assert reached == (5 if fail_open else 0)


DESCRIPTORS = """
domain: mixerhub
descriptors:
- key: generic_key
  value: upstream
  descriptors:
  - key: remote_address
    rate_limit: {unit: hour, requests_per_unit: 3}
"""


@pytest.mark.parametrize("mode", MODES)
async def test_envoy_rate_limit_filter_asks_the_hub(mode: str, tmp_path,
                                                    upstream: Upstream) -> None:
    from tests.envoy.conftest import POLICY, start_hub

    hub = await start_hub(tmp_path, POLICY.read_text(), **{"descriptors.yaml": DESCRIPTORS})
    try:
        async with running_envoy(options(hub, upstream, mode, ratelimit=True)) as envoy, \
                ClientSession() as client:
            statuses, headers = [], None
            for _ in range(4):
                async with client.get(f"http://127.0.0.1:{envoy.port}/limited",
                                      headers={"x-user": "alice"}) as r:
                    statuses.append(r.status)
                    headers = r.headers
        metrics = await scrape(hub.http.port)
    finally:
        await hub.stop()
    assert statuses == [200, 200, 200, 429]
    assert headers["x-ratelimit-limit"].startswith("3")
    assert headers["x-ratelimit-remaining"] == "0"
    assert metrics['mixerhub_quota_requests_total{outcome="exhausted"}'] >= 1
    assert sum(1 for s in upstream.seen if s["path"] == "/limited") == 3


async def test_envoyproxy_ratelimit_example_configs_limit_through_envoy(
        tmp_path, upstream: Upstream) -> None:
    """The example descriptor files, loaded unchanged (all three good ones together),
    limit requests Envoy describes with request headers."""
    from pathlib import Path

    from tests.envoy.conftest import POLICY, start_hub

    data = Path(__file__).parents[1] / "data" / "ratelimit"
    files = {p.name: p.read_text() for p in data.glob("*.yaml")
             if p.name.startswith(("examples_", "test_config_basic"))}
    assert len(files) == 3
    hub = await start_hub(tmp_path, POLICY.read_text(), **files)
    opts = options(hub, upstream, "ext_authz", ratelimit=True, ratelimit_domain="rl",
                   ratelimit_headers={"x-foo": "foo", "x-bar": "bar"})
    try:
        async with running_envoy(opts) as envoy, ClientSession() as client:
            async def statuses(bar: str, n: int) -> list[int]:
                out = []
                for _ in range(n):
                    async with client.get(f"http://127.0.0.1:{envoy.port}/rl", headers={
                            "x-user": "alice", "x-foo": "f", "x-bar": bar}) as r:
                        out.append(r.status)
                return out

            assert await statuses("bkthomps", 2) == [200, 429]  # foo/bar=bkthomps: 1/min
            assert await statuses("any", 4) == [200, 200, 200, 429]  # foo/bar: 3/min
            assert await statuses("banned", 1) == [429]  # requests_per_unit: 0
    finally:
        await hub.stop()
