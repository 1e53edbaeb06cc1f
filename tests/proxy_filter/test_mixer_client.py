"""The Python Mixer client against a real hub."""

from __future__ import annotations

import datetime as dt

from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.verdict import QuotaRequest
from tests.conftest import CapturingPolicy, scrape


async def test_check_round_trip_with_quotas(hub) -> None:
    hub.policy = policy = CapturingPolicy()
    client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
    attrs = {"source.uid": "kubernetes://a", "request.headers": {"x-user": "alice"},
             "request.time": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}
    result = await client.check(attrs, quotas={"requestcount": QuotaRequest(3)}, dedup_id="d1")
    await client.close()
    assert result.verdict.ok
    assert result.verdict.valid_duration == dt.timedelta(seconds=60)
    assert result.verdict.valid_use_count == 10_000
    assert result.quotas["requestcount"].granted_amount == 3
    assert policy.checks[0].values == attrs
    metrics = await scrape(hub.http.port)
    assert metrics['mixerhub_checks_total{outcome="ok",source="mixer"}'] == 1
    assert metrics['mixerhub_check_duration_seconds_count{source="mixer"}'] == 1
