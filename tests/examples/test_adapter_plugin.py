"""A third-party adapter installed from its own package is found and used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mixerhub.proxy_filter.mixer_client import MixerClient
from tests.hub.test_cli import free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "adapter-plugin"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(PLUGIN)],
                   check=True, timeout=300)
    return target


def env_with(path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(path)}


def test_listed_by_mixerhub_adapters(plugin_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mixerhub", "adapters"], env=env_with(plugin_path),
                         capture_output=True, text=True, check=True, timeout=60)
    assert "prefixchecker" in out.stdout and "mixerhub_prefixchecker" in out.stdout
    plain = subprocess.run([sys.executable, "-m", "mixerhub", "adapters"], capture_output=True,
                           text=True, check=True, timeout=60)
    assert "prefixchecker" not in plain.stdout


async def test_a_hub_uses_it(plugin_path: Path, tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    log = (tmp_path / "hub.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixerhub", "serve", "--grpc", f"127.0.0.1:{grpc_port}",
         "--http", f"127.0.0.1:{http_port}", "--config", str(PLUGIN / "config.yaml")],
        env=env_with(plugin_path), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{http_port}/readyz")
        client = MixerClient(f"127.0.0.1:{grpc_port}")
        allowed = await client.check({"source.uid": "kubernetes://reviews-v1"})
        denied = await client.check({"source.uid": "kubernetes://ratings-v1"})
        await client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert allowed.verdict.ok and allowed.verdict.valid_use_count == 1000
    assert denied.verdict.code == 7
    assert denied.verdict.message == "kubernetes://ratings-v1 has no allowed prefix"
