"""The hub SIGKILLed under load through two `mixerhub proxy` processes, one failing closed
(the default) and one open: while the hub is gone every request gets its proxy's fail
policy (n/n), and after a restart on the same ports the time until requests are decided
by the hub again is measured.

Every request has a new path and the hub's rule reads the path, so no answer comes from
a proxy's check cache: each one either reaches the hub (its response carries the rule's
``x-policy: checked`` header) or gets the fail policy."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.conftest import scrape
from tests.services._proc import free_port

RATE = 40  # requests per second through each proxy
POLICY = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny, namespace: istio-system}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: closed}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: mark, namespace: istio-system}
spec:
  match: (request.path | "/").startsWith("/load/")
  responseHeaderOperations:
  - {name: x-policy, values: ['"checked"']}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: closed-door, namespace: istio-system}
spec:
  match: (request.path | "") == "/closed"
  actions: [{handler: deny, instances: [nothing]}]
"""


@dataclass
class Answer:
    proxy: str
    started: float
    status: int
    by_hub: bool


class HubProcess:
    """`mixerhub serve` on fixed ports, so a restart comes back where the proxies look."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.grpc, self.http = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mixerhub", "serve", "--grpc", f"127.0.0.1:{self.grpc}",
             "--http", f"127.0.0.1:{self.http}", "--config", str(self.config), "--no-watch"],
            stdout=self.log.open("a"), stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no goodbye, sockets just close
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


async def ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            assert time.monotonic() < deadline, f"{url} not ready"
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[int]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="up")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def proxy(hub: HubProcess, upstream_port: int, log: Path, *extra: str
                ) -> AsyncIterator[tuple[int, int]]:
    port, metrics = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixerhub", "proxy", "--listen", f"127.0.0.1:{port}",
         "--upstream", f"http://127.0.0.1:{upstream_port}", "--hub", f"127.0.0.1:{hub.grpc}",
         "--hub-http", f"127.0.0.1:{hub.http}", "--metrics", f"127.0.0.1:{metrics}",
         "--check-timeout", "1", *extra], stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        await ready(f"http://127.0.0.1:{metrics}/healthz")
        yield port, metrics
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Load:
    """RATE requests a second through each proxy, each with a new path."""

    def __init__(self, proxies: dict[str, int]) -> None:
        self.proxies = proxies
        self.answers: list[Answer] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._n = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=64)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            pending: set[asyncio.Task[None]] = set()
            while not self._stop.is_set():
                for name, port in self.proxies.items():
                    task = asyncio.create_task(self._one(session, name, port))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                await asyncio.sleep(1 / RATE)
            await asyncio.gather(*pending)

    async def _one(self, session: aiohttp.ClientSession, name: str, port: int) -> None:
        self._n += 1
        started = time.monotonic()
        async with session.get(f"http://127.0.0.1:{port}/load/{self._n}") as response:
            await response.read()
            self.answers.append(Answer(name, started, response.status,
                                       response.headers.get("x-policy") == "checked"))


async def test_hub_killed_under_proxy_load_fail_policy_applies_and_recovery_is_measured(
        tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(POLICY)
    hub = HubProcess(config, tmp_path / "hub.log")
    hub.start()
    try:
        await ready(f"http://127.0.0.1:{hub.http}/readyz")
        async with upstream() as up, \
                proxy(hub, up, tmp_path / "closed.log") as (closed, closed_metrics), \
                proxy(hub, up, tmp_path / "open.log", "--fail-open") as (opened, _):
            load = Load({"closed": closed, "open": opened})
            load.start()
            await asyncio.sleep(2)
            killed_at = time.monotonic()
            hub.kill()
            await asyncio.sleep(3)
            restarted_at = time.monotonic()
            hub.start()
            await ready(f"http://127.0.0.1:{hub.http}/readyz")
            ready_at = time.monotonic()
            await asyncio.sleep(4)
            await load.stop()
            metrics = await scrape(closed_metrics)
    finally:
        hub.stop()
    answers = load.answers
    before = [a for a in answers if a.started < killed_at - 0.2]
    outage = [a for a in answers if killed_at + 0.2 < a.started < restarted_at]
    recovered = {p: min((a.started for a in answers if a.proxy == p and a.by_hub
                         and a.started > restarted_at), default=None)
                 for p in ("closed", "open")}
    closed_down = [a for a in outage if a.proxy == "closed"]
    open_down = [a for a in outage if a.proxy == "open"]
    gap = {p: (t - restarted_at if t else None) for p, t in recovered.items()}
    print(f"\nhub SIGKILLed under {2 * RATE} req/s through two proxies: fail-closed "
          f"{sum(a.status == 503 for a in closed_down)}/{len(closed_down)} answered 503, "
          f"fail-open {sum(a.status == 200 and not a.by_hub for a in open_down)}/"
          f"{len(open_down)} passed unchecked; restarted hub ready after "
          f"{ready_at - restarted_at:.2f} s; requests decided by the hub again after "
          f"{gap['closed']:.2f} s (closed proxy) and {gap['open']:.2f} s (open proxy) "
          f"from the restart")
    assert before and all(a.status == 200 and a.by_hub for a in before)
    assert len(closed_down) >= RATE and len(open_down) >= RATE
    assert all(a.status == 503 for a in closed_down)
    assert all(a.status == 200 and not a.by_hub for a in open_down)
    assert {a.status for a in answers} <= {200, 503}  # nothing else, ever
    assert gap["closed"] is not None and gap["open"] is not None
    assert max(gap.values()) < 20  # generous: process start plus the client's reconnect
    last = [a for a in answers if a.started > max(recovered.values()) + 0.5]
    assert last and all(a.by_hub for a in last)  # and it stays recovered
    assert metrics['mixerhub_proxy_requests_total{outcome="fail_closed"}'] >= len(closed_down)
