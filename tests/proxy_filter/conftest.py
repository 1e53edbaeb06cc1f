"""Fixtures for the client and proxy tests: a real hub serving tests/proxy_filter/data,
a real upstream (an aiohttp app on port 0) and in-process proxies."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mixerhub.app import Hub, Settings
from mixerhub.attributes.bag import AttributeBag
from mixerhub.proxy_filter.gate import GateOptions
from mixerhub.proxy_filter.metrics import ProxyMetrics
from mixerhub.proxy_filter.proxy import ProxyConfig, ReverseProxy
from tests.conftest import CapturingPolicy

POLICY = Path(__file__).parent / "data" / "policy.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RecordingPolicy(CapturingPolicy):
    """Allows everything; keeps report bags and the size of every Report RPC's batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def report(self, bags: Sequence[AttributeBag]) -> None:
        self.batches.append(len(bags))
        await super().report(bags)


async def start_hub(config: Path | None = POLICY, grpc_port: int = 0) -> Hub:
    hub = Hub(Settings(grpc=f"127.0.0.1:{grpc_port}", http="127.0.0.1:0",
                       config=(str(config),) if config else (), watch=False))
    await hub.start()
    return hub


@pytest.fixture
async def policy_hub() -> AsyncIterator[Hub]:
    hub = await start_hub()
    yield hub
    await hub.stop()


@dataclasses.dataclass
class Upstream:
    """A real HTTP server; remembers every request it got."""

    port: int = 0
    seen: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def upstream_app(upstream: Upstream) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        record = {"method": request.method, "path": request.path_qs,
                  "headers": dict(request.headers), "body_size": len(body),
                  "peer_port": request.transport.get_extra_info("peername")[1]}
        upstream.seen.append(record)
        return web.json_response(record, headers={"x-upstream": "yes", "x-debug": "up"})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "application/octet-stream"})
        await response.prepare(request)
        for i in range(int(request.query.get("chunks", "8"))):
            await response.write(bytes([i % 256]) * 65536)
        await response.write_eof()
        return response

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="as asked")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/stream", stream)
    app.router.add_get("/status/{code}", status)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    runner = web.AppRunner(upstream_app(up), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    up.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield up
    await runner.cleanup()


ProxyFactory = Callable[..., Awaitable[ReverseProxy]]


@pytest.fixture
async def make_proxy(upstream: Upstream) -> AsyncIterator[ProxyFactory]:
    """``await make_proxy(hub_grpc_port, hub_http_port, **ProxyConfig fields)``."""
    started: list[ReverseProxy] = []

    async def make(grpc_port: int, http_port: int | None = None, *,
                   gate: GateOptions | None = None, **fields: Any) -> ReverseProxy:
        config = ProxyConfig(listen="127.0.0.1:0", upstream=upstream.url,
                             hub=f"127.0.0.1:{grpc_port}",
                             hub_http=f"127.0.0.1:{http_port or free_port()}",
                             gate=gate or GateOptions(), **fields)
        proxy = ReverseProxy(config, ProxyMetrics())
        await proxy.start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        await proxy.stop()


def metric(proxy: ReverseProxy, name: str, **labels: str) -> float:
    value = proxy.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def hub_checks(hub: Hub) -> float:
    """Check RPCs the hub answered (ok or denied)."""
    get = hub.metrics.registry.get_sample_value
    return sum(get("mixerhub_checks_total", {"source": "mixer", "outcome": o}) or 0.0
               for o in ("ok", "denied", "error"))


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait (generously) until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def as_json(text: str) -> Any:
    return json.loads(text)
