"""A burst of identical checks that miss the cache makes one adapter call, not many."""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

from mixerhub import hookimpl
from mixerhub.adapter import BaseAdapter, CheckResult
from mixerhub.app import Hub, Settings
from mixerhub.plugins import AdapterRegistry, load_plugins
from mixerhub.proxy_filter.mixer_client import MixerClient

CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: slow}
spec: {compiledAdapter: slowcheck}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: caller}
spec: {compiledTemplate: listentry, params: {value: source.uid}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: r}
spec:
  actions: [{handler: slow, instances: [caller]}]
"""


class SlowCheck(BaseAdapter):
    """Takes 200 ms to answer, like a remote policy engine under load."""

    name: ClassVar[str] = "slowcheck"
    templates: ClassVar[frozenset[str]] = frozenset({"listentry"})
    calls: ClassVar[list[str]] = []

    async def check(self, instance: Any) -> CheckResult:
        SlowCheck.calls.append(instance.value)
        await asyncio.sleep(0.2)
        return CheckResult()


def plugin() -> types.ModuleType:
    module = types.ModuleType("slowcheck_plugin")

    @hookimpl
    def mixerhub_register_adapters(registry: AdapterRegistry) -> None:
        registry.register(SlowCheck)

    module.mixerhub_register_adapters = mixerhub_register_adapters  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    return module


async def test_concurrent_identical_checks_share_one_adapter_call(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(CONFIG)
    SlowCheck.calls.clear()
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(config),),
                       watch=False, cache_size=0), plugins=load_plugins(extra=[plugin()]))
    await hub.start()
    client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
    try:
        same = [client.check({"source.uid": "a", "request.id": str(i)}) for i in range(10)]
        other = [client.check({"source.uid": "b"})]
        results = await asyncio.gather(*same, *other)
    finally:
        await client.close()
        await hub.stop()
    assert all(r.verdict.ok for r in results)
    assert sorted(SlowCheck.calls) == ["a", "b"]
