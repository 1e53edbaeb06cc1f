"""A config file rewritten good / bad / good under check traffic: the hub keeps answering
(no check fails), every bad version is refused and counted while the last good one keeps
serving, and when the writes stop the final good config is the one in force."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from mixerhub.app import Hub, Settings
from mixerhub.proxy_filter.mixer_client import MixerClient
from tests.conftest import scrape

CYCLES = 6
BURST = 30  # writes 10 ms apart, alternating, ending on a good one

GOOD = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: deny, namespace: istio-system}}
spec: {{compiledAdapter: denier, params: {{status: {{code: 7, message: "{name}"}}}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: nothing, namespace: istio-system}}
spec: {{compiledTemplate: checknothing}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: deny-one-path, namespace: istio-system}}
spec:
  match: (request.path | "") == "/{name}"
  actions: [{{handler: deny, instances: [nothing]}}]
"""
BAD = [
    "kind: rule\nspec: [unclosed\n",  # not YAML
    GOOD.format(name="x").replace("compiledAdapter: denier", "compiledAdapter: nosuch"),
    GOOD.format(name="x").replace('(request.path | "") == "/x"', 'request.path == 3'),
    GOOD.format(name="x")[:200],  # a file caught half-written
]


class Traffic:
    """Four callers checking all along; any answer other than OK or the denial is a
    failure."""

    def __init__(self, port: int) -> None:
        self.client = MixerClient(f"127.0.0.1:{port}", timeout=10)
        self.answered = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(i)) for i in range(4)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self.client.close()

    async def _loop(self, i: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                result = await self.client.check({"request.path": f"/g{n % CYCLES}"})
                if result.verdict.code not in (0, 7):
                    self.failures.append(f"code {result.verdict.code}")
            except Exception as exc:  # noqa: BLE001 - any failure is what we look for
                self.failures.append(repr(exc))
            self.answered += 1
            await asyncio.sleep(0.002)


async def denied(client: MixerClient, path: str) -> bool:
    return (await client.check({"request.path": path})).verdict.code == 7


async def until(probe, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, "the hub did not get there in time"
        await asyncio.sleep(0.02)


async def test_config_flapping_under_load_keeps_serving_and_the_last_good_wins(
        tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(GOOD.format(name="g0"))
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(config),)))
    await hub.start()
    traffic, probe = Traffic(hub.grpc.port), MixerClient(f"127.0.0.1:{hub.grpc.port}")
    errors = hub.metrics.config_reloads.labels("error")
    traffic.start()
    kept = []
    try:
        for i in range(1, CYCLES):
            config.write_text(GOOD.format(name=f"g{i}"))
            await until(lambda i=i: denied(probe, f"/g{i}"))
            before = errors._value.get()
            config.write_text(BAD[i % len(BAD)])
            await until(lambda before=before: _grew(errors, before))
            kept.append(await denied(probe, f"/g{i}"))  # the last good one still serves
        burst_at = time.monotonic()
        for j in range(BURST - 1):
            config.write_text(BAD[j % len(BAD)] if j % 2 == 0 else GOOD.format(name=f"b{j}"))
            await asyncio.sleep(0.01)
        config.write_text(GOOD.format(name="final"))
        await until(lambda: denied(probe, "/final"))
        settled = time.monotonic() - burst_at
        await asyncio.sleep(0.5)  # let any reload still queued finish
        final = [await denied(probe, p) for p in ("/final", "/g1", "/b1")]
        samples = await scrape(hub.http.port)
    finally:
        await traffic.stop()
        await probe.close()
        await hub.stop()
    ok = samples['mixerhub_config_reloads_total{result="ok"}']
    bad = samples['mixerhub_config_reloads_total{result="error"}']
    print(f"\nconfig flapping: {traffic.answered} checks answered, {len(traffic.failures)} "
          f"failed; reloads ok {ok:.0f}, refused {bad:.0f}; the final config in force "
          f"{settled:.2f} s after a {BURST}-write burst")
    assert traffic.failures == []
    assert traffic.answered > 100
    assert kept == [True] * (CYCLES - 1)
    assert bad >= CYCLES - 1 and ok >= CYCLES  # the first load counts as ok too
    assert final == [True, False, False]


async def _grew(counter: object, before: float) -> bool:
    return counter._value.get() > before  # type: ignore[attr-defined]
