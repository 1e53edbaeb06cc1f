"""The reverse proxy with a real hub (tests/proxy_filter/data/policy.yaml) and a real
upstream: issue #5's Must-shows 1–5, in process."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib

import aiohttp

from mixerhub.proxy_filter.batcher import BatchOptions
from mixerhub.proxy_filter.gate import GateOptions
from tests.proxy_filter.conftest import (RecordingPolicy, as_json, eventually, free_port,
                                         hub_checks, metric, start_hub)


def url(proxy, path: str) -> str:
    return f"http://127.0.0.1:{proxy.port}{path}"


# -- Must show 1: allowed → upstream; denied → mapped status; header operations -----------

async def test_allowed_request_gets_the_upstream_answer(policy_hub, upstream, make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port)
    async with aiohttp.ClientSession() as s, s.get(url(proxy, "/echo?q=1")) as r:
        assert r.status == 200
        assert r.headers["x-upstream"] == "yes"
        body = as_json(await r.text())
    assert body["path"] == "/echo?q=1"
    assert len(upstream.seen) == 1


async def test_denials_map_to_http_status_with_the_message_as_body(policy_hub, upstream,
                                                                   make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port)
    async with aiohttp.ClientSession() as s:
        async with s.get(url(proxy, "/admin/users")) as r:
            assert (r.status, await r.text()) == (403, "the admin API is closed")
        async with s.get(url(proxy, "/private")) as r:
            assert (r.status, await r.text()) == (401, "log in first")
        async with s.get(url(proxy, "/private"), headers={"authorization": "Bearer x"}) as r:
            assert r.status == 200
    assert [seen["path"] for seen in upstream.seen] == ["/private"]


async def test_quota_exhaustion_is_429(policy_hub, upstream, make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port, policy_hub.http.port, service="reviews",
                             namespace="default")
    statuses = []
    async with aiohttp.ClientSession() as s:
        for _ in range(110):
            async with s.get(url(proxy, "/api/books")) as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert "quota is exhausted for: requestcount" in await r.text()
    assert statuses.count(200) == 100 and statuses.count(429) == 10


async def test_header_operations_are_applied_both_ways(policy_hub, upstream, make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port)
    async with aiohttp.ClientSession() as s:
        async with s.get(url(proxy, "/echo"), headers={"x-user": "alice",
                                                       "x-debug": "secret"}) as r:
            assert r.status == 200
            assert r.headers.getall("x-served-by") == ["mixerhub"]
            body = as_json(await r.text())
    sent = {k.lower(): v for k, v in body["headers"].items()}
    assert sent["x-authenticated-user"] == "alice"
    assert "x-debug" not in sent


async def test_forwarding_hygiene_and_request_id(policy_hub, upstream, make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port)
    async with aiohttp.ClientSession() as s:
        headers = {"connection": "keep-alive, x-hop", "x-hop": "1", "te": "trailers",
                   "proxy-authorization": "Basic eA==", "x-forwarded-for": "10.0.0.1",
                   "host": "books.example"}
        async with s.get(url(proxy, "/echo"), headers=headers) as r:
            sent = {k.lower(): v for k, v in as_json(await r.text())["headers"].items()}
        async with s.get(url(proxy, "/echo"), headers={"x-request-id": "given-1"}) as r:
            second = {k.lower(): v for k, v in as_json(await r.text())["headers"].items()}
    assert not {"x-hop", "te", "proxy-authorization"} & sent.keys()
    assert sent["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"] == sent["host"] == "books.example"
    assert len(sent["x-request-id"]) == 36  # generated (a UUID)
    assert second["x-request-id"] == "given-1"


async def test_bodies_stream_both_ways(policy_hub, upstream, make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port)
    payload = bytes(range(256)) * 40_000  # 10 MB, sent in 1 MB chunks without a length

    async def chunks():
        for i in range(0, len(payload), 1 << 20):
            yield payload[i:i + (1 << 20)]

    async with aiohttp.ClientSession() as s:
        async with s.post(url(proxy, "/upload"), data=chunks()) as r:
            assert as_json(await r.text())["body_size"] == len(payload)
        async with s.get(url(proxy, "/stream?chunks=40")) as r:
            assert "content-length" not in r.headers  # streamed through, not buffered
            digest = hashlib.sha256()
            async for chunk in r.content.iter_chunked(65536):
                digest.update(chunk)
    expected = hashlib.sha256(b"".join(bytes([i]) * 65536 for i in range(40))).hexdigest()
    assert digest.hexdigest() == expected
    assert upstream.seen[0]["headers"].get("Transfer-Encoding") == "chunked"


async def test_keepalive_on_both_sides(policy_hub, upstream, make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        for _ in range(3):  # three requests on one client connection
            writer.write(b"GET /echo HTTP/1.1\r\nHost: books\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
    finally:
        writer.close()
    assert len(upstream.seen) == 3
    assert len({seen["peer_port"] for seen in upstream.seen}) == 1  # one upstream connection


async def test_bodiless_answers_and_expect_continue(policy_hub, upstream, make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port)
    async with aiohttp.ClientSession() as s:
        async with s.head(url(proxy, "/echo")) as r:
            assert r.status == 200 and int(r.headers["content-length"]) > 0
            assert await r.read() == b""
        for code in (204, 304):
            async with s.get(url(proxy, f"/status/{code}")) as r:
                assert r.status == code and await r.read() == b""
        async with s.post(url(proxy, "/echo"), data=b"x" * 1000, expect100=True) as r:
            assert as_json(await r.text())["body_size"] == 1000
        async with s.post(url(proxy, "/admin"), data=b"x" * 1000, expect100=True) as r:
            assert r.status == 403  # denied before the body was asked for
    assert "expect" not in {k.lower() for k in upstream.seen[-1]["headers"]}


async def test_upstream_down_is_502_and_counted(policy_hub, upstream, make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port)
    proxy.upstream = f"http://127.0.0.1:{free_port()}"
    async with aiohttp.ClientSession() as s, s.get(url(proxy, "/echo")) as r:
        assert r.status == 502
    assert metric(proxy, "mixerhub_proxy_upstream_errors_total", kind="connect") == 1


# -- Must show 2: 100 identical requests cost the hub ≤ 2 checks ----------------------------

async def test_hundred_identical_requests_cost_one_hub_check(policy_hub, upstream, make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port)
    before = hub_checks(policy_hub)
    async with aiohttp.ClientSession() as s:
        for i in range(100):  # differing only in what no rule reads
            async with s.get(url(proxy, "/echo"), headers={"x-request-id": f"r{i}"}) as r:
                assert r.status == 200
    assert hub_checks(policy_hub) - before == 1
    assert metric(proxy, "mixerhub_proxy_check_cache_hits_total") == 99


async def test_hundred_concurrent_identical_requests_share_the_hub_call(policy_hub, upstream,
                                                                        make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port)
    before = hub_checks(policy_hub)
    async with aiohttp.ClientSession() as s:
        async def one() -> int:
            async with s.get(url(proxy, "/admin")) as r:
                return r.status
        statuses = await asyncio.gather(*(one() for _ in range(100)))
    assert statuses == [403] * 100  # denials are cached too
    assert hub_checks(policy_hub) - before <= 2


async def test_use_count_sends_every_fifth_request_to_the_hub(policy_hub, upstream,
                                                              make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port)
    before = hub_checks(policy_hub)
    async with aiohttp.ClientSession() as s:
        for _ in range(12):
            async with s.get(url(proxy, "/limited")) as r:
                assert r.status == 403
    assert hub_checks(policy_hub) - before == 3  # requests 1, 6 and 11


# -- Must show 3: quota prefetch never grants beyond the hub's limit ------------------------

async def test_thousand_requests_against_a_limit_of_100(policy_hub, upstream, make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port, policy_hub.http.port, service="reviews",
                             namespace="default")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20)) as s:
        async def one(i: int) -> int:
            async with s.get(url(proxy, f"/api/items/{i % 7}")) as r:
                return r.status
        statuses = await asyncio.gather(*(one(i) for i in range(1000)))
    granted = statuses.count(200)
    prefetch = proxy.config.gate.prefetch.min_amount
    assert 100 - prefetch <= granted <= 100  # never beyond the limit; prefetch wastes ≤ one fetch
    assert statuses.count(429) == 1000 - granted
    assert metric(proxy, "mixerhub_proxy_quota_fetched_units_total") <= 100
    fetches = metric(proxy, "mixerhub_proxy_hub_calls_total", rpc="quota", result="ok")
    assert fetches < 100  # far fewer hub calls than requests
    assert metric(proxy, "mixerhub_proxy_quota_units_total", result="prefetched") > 0


async def test_requests_outside_the_quota_spec_are_not_charged(policy_hub, upstream,
                                                               make_proxy):
    proxy = await make_proxy(policy_hub.grpc.port, policy_hub.http.port, service="reviews",
                             namespace="default")
    async with aiohttp.ClientSession() as s:
        for _ in range(150):
            async with s.get(url(proxy, "/books")) as r:
                assert r.status == 200
    assert metric(proxy, "mixerhub_proxy_hub_calls_total", rpc="quota", result="ok") == 0


# -- Must show 4: reports batched; a hub restart loses none -----------------------------------

async def test_reports_arrive_batched_with_response_attributes(upstream, make_proxy):
    hub = await start_hub(config=None)
    hub.policy = policy = RecordingPolicy()
    try:
        proxy = await make_proxy(hub.grpc.port)
        async with aiohttp.ClientSession() as s:
            for i in range(250):
                async with s.post(url(proxy, f"/echo/{i}"), data=b"x" * 10) as r:
                    assert r.status == 200
        await eventually(lambda: len(policy.reports) == 250)
    finally:
        await hub.stop()
    assert max(policy.batches) <= 100 and len(policy.batches) <= 10
    bag = policy.reports[0].values
    assert bag["response.code"] == 200 and bag["request.size"] == 10
    assert bag["response.size"] > 0 and bag["response.duration"].total_seconds() > 0
    assert bag["response.headers"]["x-upstream"] == "yes"
    assert bag["check.cache_hit"] is False and policy.reports[-1].values["check.cache_hit"]


async def test_hub_restart_mid_traffic_loses_no_report(upstream, make_proxy):
    port = free_port()
    first = await start_hub(config=None, grpc_port=port)
    first.policy = before = RecordingPolicy()
    proxy = await make_proxy(port)
    sent: list[str] = []

    async def traffic(s: aiohttp.ClientSession, n: int) -> None:
        for _ in range(n):
            rid = f"req-{len(sent)}"
            sent.append(rid)
            async with s.get(url(proxy, "/echo"), headers={"x-request-id": rid}) as r:
                assert r.status == 200  # cached verdict: the hub being down does not matter

    async with aiohttp.ClientSession() as s:
        await traffic(s, 150)
        await first.stop()
        await traffic(s, 150)  # the hub is down: reports wait and retry
        second = await start_hub(config=None, grpc_port=port)
        second.policy = after = RecordingPolicy()
        try:
            await traffic(s, 50)
            await eventually(lambda: _ids(before, after) >= set(sent), timeout=30)
        finally:
            await second.stop()
    assert metric(proxy, "mixerhub_proxy_report_retries_total") > 0
    assert metric(proxy, "mixerhub_proxy_reports_total", result="dropped") == 0
    assert metric(proxy, "mixerhub_proxy_reports_total", result="sent") >= 350


def _ids(*policies: RecordingPolicy) -> set[str]:
    return {b.values["request.id"] for p in policies for b in p.reports}


# -- Must show 5: hub down → fail closed 503 / fail open; counted ---------------------------

#: The hub stays down: give up on unsent reports quickly at shutdown (they are counted).
HUB_DOWN = GateOptions(check_timeout=2, reports=BatchOptions(close_timeout=0.2))


async def test_hub_down_fails_closed_with_503(upstream, make_proxy):
    proxy = await make_proxy(free_port(), gate=HUB_DOWN)
    async with aiohttp.ClientSession() as s, s.get(url(proxy, "/echo")) as r:
        assert r.status == 503
        assert (await r.text()).startswith("policy check unavailable: UNAVAILABLE")
    assert upstream.seen == []
    assert metric(proxy, "mixerhub_proxy_fail_policy_total", policy="closed") == 1
    assert metric(proxy, "mixerhub_proxy_requests_total", outcome="fail_closed") == 1


async def test_hub_down_fails_open_when_told(upstream, make_proxy):
    proxy = await make_proxy(free_port(), gate=dataclasses.replace(HUB_DOWN, fail_open=True))
    async with aiohttp.ClientSession() as s, s.get(url(proxy, "/echo")) as r:
        assert r.status == 200
    assert len(upstream.seen) == 1
    assert metric(proxy, "mixerhub_proxy_fail_policy_total", policy="open") == 1


async def test_hub_down_cached_verdicts_still_answer(upstream, make_proxy):
    hub = await start_hub()
    proxy = await make_proxy(hub.grpc.port, gate=HUB_DOWN)
    async with aiohttp.ClientSession() as s:
        async with s.get(url(proxy, "/admin")) as r:
            assert r.status == 403
        await hub.stop()
        async with s.get(url(proxy, "/admin")) as r:
            assert r.status == 403  # from the cache
        async with s.get(url(proxy, "/echo")) as r:
            assert r.status == 503  # uncached: fail closed
    assert metric(proxy, "mixerhub_proxy_fail_policy_total", policy="closed") == 1
