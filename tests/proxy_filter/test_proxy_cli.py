"""`mixerhub proxy` as a user runs it: a real process between a real client, a real hub
and a real upstream (the hub and the upstream run in the test's event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import scrape
from tests.proxy_filter.conftest import RecordingPolicy, eventually, free_port, start_hub


@contextlib.asynccontextmanager
async def proxy_process(hub_grpc: int, upstream_url: str, *extra: str,
                        hub_http: int | None = None) -> AsyncIterator[tuple[int, int, object]]:
    port, metrics = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mixerhub", "proxy", "--listen", f"127.0.0.1:{port}",
        "--upstream", upstream_url, "--hub", f"127.0.0.1:{hub_grpc}",
        "--hub-http", f"127.0.0.1:{hub_http or free_port()}",
        "--metrics", f"127.0.0.1:{metrics}", "--check-timeout", "2", *extra,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_healthy(metrics, proc)
        yield port, metrics, proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def wait_healthy(metrics_port: int, proc, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(f"http://127.0.0.1:{metrics_port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if proc.returncode is not None or asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"proxy did not start: {await proc.stderr.read()!r}")
            await asyncio.sleep(0.1)


@pytest.fixture
async def recording_hub():
    hub = await start_hub(config=None)
    hub.policy = RecordingPolicy()
    yield hub
    await hub.stop()


async def test_cli_allows_denies_maps_status_and_applies_header_ops(policy_hub, upstream):
    async with proxy_process(policy_hub.grpc.port, upstream.url) as (port, metrics, _):
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/echo", headers={"x-user": "alice"}) as r:
                assert r.status == 200 and r.headers["x-served-by"] == "mixerhub"
            async with s.get(f"{base}/admin") as r:
                assert (r.status, await r.text()) == (403, "the admin API is closed")
            async with s.get(f"{base}/private") as r:
                assert r.status == 401
        assert upstream.seen[0]["headers"]["x-authenticated-user"] == "alice"
        samples = await scrape(metrics)
    assert samples['mixerhub_proxy_requests_total{outcome="allowed"}'] == 1
    assert samples['mixerhub_proxy_requests_total{outcome="denied"}'] == 2


async def test_cli_quota_from_the_hubs_quota_specs(policy_hub, upstream):
    async with proxy_process(policy_hub.grpc.port, upstream.url, "--service", "reviews",
                             "--namespace", "default",
                             hub_http=policy_hub.http.port) as (port, metrics, _):
        statuses = []
        async with aiohttp.ClientSession() as s:
            for _ in range(105):
                async with s.get(f"http://127.0.0.1:{port}/api/books") as r:
                    statuses.append(r.status)
        samples = await scrape(metrics)
    assert statuses.count(200) == 100 and statuses.count(429) == 5
    assert samples['mixerhub_proxy_quotaspec_fetches_total{result="ok"}'] >= 1


async def test_cli_derives_attributes_and_reports_after(recording_hub, upstream):
    policy = recording_hub.policy
    async with proxy_process(recording_hub.grpc.port, upstream.url,
                             "--attribute", "destination.port=9080",
                             "--attribute", "destination.ip=10.1.2.3",
                             "--attribute", 'destination.labels={"app": "books"}',
                             "--service", "books") as (port, _, proc):
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{port}/a/b?x=1&y=2", data=b"12345",
                              headers={"user-agent": "t/1"}) as r:
                assert r.status == 200
        proc.send_signal(signal.SIGTERM)  # flushes the report batch on the way out
        assert await proc.wait() == 0
    check = policy.checks[0].values
    assert check["destination.port"] == 9080
    assert check["destination.ip"] == ipaddress.ip_address("10.1.2.3")
    assert check["destination.labels"] == {"app": "books"}
    assert check["destination.service.name"] == "books"
    assert check["source.ip"] == ipaddress.ip_address("127.0.0.1") and check["source.port"] > 0
    assert (check["request.path"], check["request.url_path"]) == ("/a/b?x=1&y=2", "/a/b")
    assert check["request.query_params"] == {"x": "1", "y": "2"}
    assert (check["request.method"], check["request.scheme"]) == ("POST", "http")
    assert check["request.useragent"] == "t/1" and check["request.size"] == 5
    assert check["request.host"] == f"127.0.0.1:{port}"
    assert check["context.protocol"] == "http" and check["context.reporter.kind"] == "inbound"
    assert check["request.id"] == check["request.headers"]["x-request-id"]
    report = policy.reports[0].values
    assert report["response.code"] == 200 and report["request.size"] == 5
    assert report["request.id"] == check["request.id"]


async def test_cli_hub_down_fails_closed_by_default(upstream):
    async with proxy_process(free_port(), upstream.url) as (port, metrics, _):
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/x") as r:
            assert r.status == 503
        samples = await scrape(metrics)
    assert samples['mixerhub_proxy_fail_policy_total{policy="closed"}'] == 1
    assert upstream.seen == []


async def test_cli_hub_down_fail_open(upstream):
    async with proxy_process(free_port(), upstream.url, "--fail-open") as (port, metrics, _):
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/x") as r:
            assert r.status == 200
        samples = await scrape(metrics)
    assert samples['mixerhub_proxy_fail_policy_total{policy="open"}'] == 1
    assert len(upstream.seen) == 1


@pytest.mark.parametrize(("args", "words"), [
    (["--attribute", "destination.port=many"], [b"destination.port", b"INT64"]),
    (["--attribute", "no-equals-sign"], [b"NAME=VALUE"]),
    (["--upstream", "127.0.0.1:8000"], [b"http:// or https://"]),
])
async def test_cli_rejects_bad_arguments(args, words):
    base = {"--listen": "127.0.0.1:0", "--upstream": "http://127.0.0.1:1",
            "--hub": "127.0.0.1:1"}
    if "--upstream" in args:
        base.pop("--upstream")
    argv = [a for pair in base.items() for a in pair] + args
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mixerhub", "proxy", *argv, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert all(w in err for w in words), err


async def test_cli_reports_survive_a_hub_restart(upstream):
    """Must show 4 with the real process: traffic before, during and after a hub restart;
    every request's report arrives."""
    port = free_port()
    first = await start_hub(config=None, grpc_port=port)
    first.policy = before = RecordingPolicy()
    ids = [f"id-{i}" for i in range(60)]
    second = None
    try:
        async with proxy_process(port, upstream.url) as (proxy_port, _, _proc):
            async with aiohttp.ClientSession() as s:
                for i, rid in enumerate(ids):
                    if i == 20:
                        await first.stop()
                    if i == 40:
                        second = await start_hub(config=None, grpc_port=port)
                        second.policy = after = RecordingPolicy()
                    async with s.get(f"http://127.0.0.1:{proxy_port}/p",
                                     headers={"x-request-id": rid}) as r:
                        assert r.status == 200  # cached verdict while the hub is away
            await eventually(lambda: {b.values["request.id"] for p in (before, after)
                                      for b in p.reports} >= set(ids), timeout=30)
    finally:
        if second is not None:
            await second.stop()
