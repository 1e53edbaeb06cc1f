"""Fixtures for the tests that drive real Envoy: an upstream, a hub with the test policy,
and Envoy started from ``mixerhub envoy-config`` between them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mixerhub.app import Hub, Settings
from mixerhub.envoy.bootstrap import EnvoyOptions
from tests.services.envoy import Envoy

POLICY = Path(__file__).with_name("policy.yaml")


@dataclasses.dataclass
class Upstream:
    port: int
    seen: list[dict[str, Any]]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """An echo server: replies with the path and headers it received."""
    seen: list[dict[str, Any]] = []

    async def echo(request: web.Request) -> web.Response:
        record = {"path": request.path_qs, "headers": dict(request.headers)}
        seen.append(record)
        return web.json_response(record)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield Upstream(runner.addresses[0][1], seen)
    await runner.cleanup()


@pytest.fixture
async def policy_hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub serving tests/envoy/policy.yaml; its access log goes to ``hub.access_log``."""
    hub = await start_hub(tmp_path, POLICY.read_text())
    yield hub
    await hub.stop()


async def start_hub(tmp_path: Path, policy: str, **extra_files: str) -> Hub:
    """A hub whose config folder holds ``policy`` (``${LOG}`` → the access log file) and
    ``extra_files`` (name → text)."""
    access_log = tmp_path / "access.log"
    folder = tmp_path / "config"
    folder.mkdir()
    config = folder / "policy.yaml"
    config.write_text(policy.replace("${LOG}", str(access_log)))
    for name, text in extra_files.items():
        (folder / name).write_text(text)
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(folder),),
                       watch=False))
    await hub.start()
    hub.access_log = access_log  # type: ignore[attr-defined]
    hub.config_path = config  # type: ignore[attr-defined]
    return hub


def options(hub: Hub, upstream: Upstream, mode: str, **extra: Any) -> EnvoyOptions:
    """Envoy between ``upstream`` and ``hub``. The hub may answer slowly on a loaded
    2-core CI machine, so Envoy waits up to 5 s for it (production default: 0.5 s)."""
    extra.setdefault("timeout_ms", 5000)
    return EnvoyOptions(hub=f"127.0.0.1:{hub.grpc.port}",
                        hub_http=f"127.0.0.1:{hub.http.port}", listen="127.0.0.1:0",
                        upstream=f"127.0.0.1:{upstream.port}", admin="127.0.0.1:0",
                        mode=mode, **extra)


@asynccontextmanager
async def running_envoy(opts: EnvoyOptions, concurrency: int = 2) -> AsyncIterator[Envoy]:
    """Envoy started and stopped off the event loop (the hub shares the loop)."""
    envoy = Envoy(opts, concurrency)
    await asyncio.to_thread(envoy.start)
    try:
        yield envoy
    finally:
        await asyncio.to_thread(envoy.stop)


async def eventually(probe: Callable[[], Any], timeout: float = 30.0,
                     interval: float = 0.1) -> Any:
    """Poll ``probe`` (sync or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout} s: {probe}")
        await asyncio.sleep(interval)
