"""Reload: a broken file keeps the running rules; a fixed one takes effect within 5 s;
Kubernetes' ConfigMap symlink swap is seen; SIGHUP reloads a running process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from mixerhub.app import Hub, Settings
from mixerhub.proxy_filter.mixer_client import MixerClient
from tests.conftest import scrape
from tests.hub.test_cli import free_port, wait_http
from tests.mounts import KubeMount

RULE = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: "%s"}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: r}
spec:
  match: request.path == "%s"
  actions: [{handler: deny, instances: [nothing]}]
"""
BROKEN = RULE.replace("compiledAdapter: denier", "compiledAdapter: no-such-adapter")


async def eventually_denied(client: MixerClient, path: str, timeout: float = 5.0) -> float:
    """Seconds until a check of ``path`` is denied (fails after ``timeout``)."""
    started = time.monotonic()
    while True:
        result = await client.check({"request.path": path})
        if not result.verdict.ok:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"{path} still allowed after {timeout}s"
        await asyncio.sleep(0.05)


async def start(paths: list[Path]) -> tuple[Hub, MixerClient]:
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0",
                       config=tuple(str(p) for p in paths), cache_size=0))
    await hub.start()
    return hub, MixerClient(f"127.0.0.1:{hub.grpc.port}")


async def test_broken_file_keeps_rules_and_fixed_file_applies(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(RULE % ("v1", "/old"))
    hub, client = await start([config])
    try:
        assert (await client.check({"request.path": "/old"})).verdict.code == 7
        config.write_text(BROKEN % ("v2", "/new"))
        deadline = time.monotonic() + 10
        while (await scrape(hub.http.port)).get(
                'mixerhub_config_reloads_total{result="error"}', 0) < 1:
            assert time.monotonic() < deadline, "the broken file was never reloaded"
            await asyncio.sleep(0.05)
        assert (await client.check({"request.path": "/old"})).verdict.message == "v1"
        assert (await client.check({"request.path": "/new"})).verdict.ok
        config.write_text(RULE % ("v3", "/new"))
        assert await eventually_denied(client, "/new") < 5
        assert (await client.check({"request.path": "/old"})).verdict.ok
    finally:
        await client.close()
        await hub.stop()


async def test_configmap_symlink_swap(tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as `..data -> ..<timestamp>/` with `file -> ..data/file`
    and updates it by replacing the `..data` link."""
    mount = KubeMount(tmp_path / "config")
    mount.update({"policy.yaml": RULE % ("cm1", "/one")})
    hub, client = await start([mount.folder])
    try:
        assert (await client.check({"request.path": "/one"})).verdict.message == "cm1"
        mount.update({"policy.yaml": RULE % ("cm2", "/two")})
        assert await eventually_denied(client, "/two") < 5
    finally:
        await client.close()
        await hub.stop()


def test_sighup_reloads_a_running_hub(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(RULE % ("v1", "/before"))
    grpc_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixerhub", "serve", "--no-watch", "--cache-size", "0",
         "--grpc", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}",
         "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{http_port}/readyz")
        config.write_text(RULE % ("v2", "/after"))

        async def check() -> float:
            client = MixerClient(f"127.0.0.1:{grpc_port}")
            try:
                await asyncio.sleep(1)
                assert (await client.check({"request.path": "/after"})).verdict.ok  # no watch
                proc.send_signal(signal.SIGHUP)
                return await eventually_denied(client, "/after")
            finally:
                await client.close()

        assert asyncio.run(check()) < 5
    finally:
        proc.terminate()
        proc.wait(timeout=30)
