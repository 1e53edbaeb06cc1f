"""Report in both encodings: every bag decoded and counted."""

from __future__ import annotations

import datetime as dt
import ipaddress

from mixerhub.proxy_filter.mixer_client import MixerClient, encode_report
from mixerhub.attributes.compression import Encoder
from tests.conftest import CapturingPolicy, scrape


def bags(n: int) -> list[dict]:
    t0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)
    return [{
        "source.uid": "kubernetes://productpage-v1",
        "destination.service.host": "reviews.default.svc.cluster.local",
        "response.code": 200 if i % 10 else 503,
        "response.duration": dt.timedelta(milliseconds=i),
        "request.time": t0 + dt.timedelta(seconds=i),
        "source.ip": ipaddress.ip_address("10.0.0.7"),
        "request.headers": {"x-request-id": f"req-{i}", ":path": "/reviews/1"},
        "connection.mtls": i % 2 == 0,
    } for i in range(n)]


async def test_100_bags_in_each_encoding_count_200(hub) -> None:
    hub.policy = policy = CapturingPolicy()
    client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
    sent = bags(100)
    await client.report(sent, encoding="independent")
    await client.report(sent, encoding="delta")
    await client.close()
    metrics = await scrape(hub.http.port)
    assert metrics['mixerhub_reports_total{source="mixer"}'] == 200
    assert [b.values for b in policy.reports] == sent + sent


def test_delta_requests_carry_only_changes() -> None:
    sent = bags(3)
    [request] = encode_report(Encoder(), sent, "delta")
    assert len(request.attributes) == 3
    # the second bag re-sends only what changed: code, duration, time, headers, mtls
    assert len(request.attributes[1].strings) == 0
    assert set(request.attributes[1].int64s) and not request.attributes[1].bytes


def test_delta_splits_where_an_attribute_disappears() -> None:
    requests = encode_report(Encoder(), [{"a.b": 1, "c.d": "x"}, {"a.b": 2}], "delta")
    assert len(requests) == 2


def test_independent_encoding_shares_words_through_default_words() -> None:
    [request] = encode_report(Encoder(), bags(5), "independent")
    assert all(not ca.words for ca in request.attributes)
    assert "kubernetes://productpage-v1" in request.default_words
    assert len(request.default_words) == len(set(request.default_words))
