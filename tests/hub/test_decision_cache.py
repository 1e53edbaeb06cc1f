"""The hub's decision cache through the Mixer API: hits counted; a reload empties it."""

from __future__ import annotations

from pathlib import Path

from mixerhub.app import Hub, Settings
from mixerhub.proxy_filter.mixer_client import MixerClient
from tests.conftest import scrape

CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: denier
metadata: {name: deny}
spec: {status: {code: 7, message: "%s"}}
---
apiVersion: config.istio.io/v1alpha2
kind: checknothing
metadata: {name: nothing}
spec: {}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: block-mallory}
spec:
  match: request.headers["x-user"] == "mallory"
  actions: [{handler: deny.denier, instances: [nothing.checknothing]}]
"""


async def test_repeated_checks_hit_and_reload_empties(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(CONFIG % "first")
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(config),),
                       watch=False))
    await hub.start()
    client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
    try:
        for i in range(5):  # x-request-id differs every time: only x-user is referenced
            result = await client.check({"request.headers": {"x-user": "mallory",
                                                              "x-request-id": str(i)}})
            assert result.verdict.message == "first"
        before = await scrape(hub.http.port)
        config.write_text(CONFIG % "second")
        assert await hub.reload("test")
        after_reload = await client.check({"request.headers": {"x-user": "mallory"}})
        after = await scrape(hub.http.port)
    finally:
        await client.close()
        await hub.stop()
    assert before["mixerhub_decision_cache_misses_total"] == 1
    assert before["mixerhub_decision_cache_hits_total"] == 4
    assert after_reload.verdict.message == "second"  # not the cached "first"
    assert after["mixerhub_decision_cache_misses_total"] == 2
    assert after["mixerhub_decision_cache_hits_total"] == 4
    assert [r.notation() for r in result.verdict.references] == ["request.headers[x-user]"]
