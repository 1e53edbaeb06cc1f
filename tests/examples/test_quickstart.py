"""The embedded default config: every built-in adapter answers over the Mixer v1 API."""

from __future__ import annotations

import json
from pathlib import Path

from mixerhub.app import Hub, Settings
from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.verdict import QuotaRequest
from tests.conftest import scrape

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


async def test_quickstart_verdicts_and_telemetry(capfd) -> None:
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(QUICKSTART),),
                       watch=False))
    await hub.start()
    client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
    try:
        admin = await client.check({"request.path": "/admin/users"})
        ratings_v3 = await client.check({"request.path": "/ratings/1",
                                         "destination.service.name": "ratings",
                                         "source.labels": {"version": "v3"}})
        ratings_v1 = await client.check({"request.path": "/ratings/1",
                                         "destination.service.name": "ratings",
                                         "source.labels": {"version": "v1"}})
        caller = {"source.uid": "kubernetes://productpage-v1", "destination.service.name": "reviews"}
        grants = [(await client.check(caller, {"requestcount": QuotaRequest(1)})).quotas
                  ["requestcount"].granted_amount for _ in range(4)]
        await client.report([{"destination.service.name": "reviews", "response.code": 200,
                              "request.path": "/reviews/1", "source.uid": "kubernetes://a"}] * 2)
        metrics = await scrape(hub.http.port)
    finally:
        await client.close()
        await hub.stop()
    assert admin.verdict.code == 7 and "admin API" in admin.verdict.message
    assert admin.verdict.valid_use_count == 1000  # denier's default
    assert ratings_v3.verdict.code == 5 and ratings_v3.verdict.message == "v3 is not whitelisted"
    assert ratings_v1.verdict.ok
    assert grants == [1, 1, 1, 0]
    assert metrics['istio_requests_total{destination_service="reviews",response_code="200"}'] == 2
    lines = [json.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]
    logged = [x for x in lines if x.get("instance") == "accesslog.instance.istio-system"]
    assert len(logged) == 2 and logged[0]["path"] == "/reviews/1"
