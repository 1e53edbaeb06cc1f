"""Report batching against a real hub: batch sizes and encoding, the delay bound, retry,
and every record that does not arrive counted."""

from __future__ import annotations

from mixerhub.api.mixer.v1 import report_pb2
from mixerhub.attributes.compression import Decoder, Encoder
from mixerhub.attributes.dictionary import global_words
from mixerhub.proxy_filter.batcher import BatchOptions, ReportBatcher
from mixerhub.proxy_filter.metrics import ProxyMetrics
from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.server.mixer import decode_report
from tests.proxy_filter.conftest import RecordingPolicy, eventually, free_port


def batcher_for(port: int, encoder: Encoder | None = None, **options) -> ReportBatcher:
    client = MixerClient(f"127.0.0.1:{port}")
    return ReportBatcher(client.send_report, encoder or client.encoder,
                         BatchOptions(**options), ProxyMetrics())


def count(batcher: ReportBatcher, result: str) -> float:
    return batcher.metrics.registry.get_sample_value(
        "mixerhub_proxy_reports_total", {"result": result}) or 0.0


def record(i: int) -> dict:
    return {"request.id": f"r{i}", "request.path": f"/books/{i % 3}", "response.code": 200,
            "request.headers": {"x-tenant": "acme"}}


def test_one_request_independent_encoding_with_shared_words() -> None:
    batcher = ReportBatcher(lambda request: None, Encoder())  # type: ignore[arg-type,return-value]
    request, encoded = batcher._encode([record(i) for i in range(3)])
    assert encoded == 3
    assert request.repeated_attributes_semantics == report_pb2.ReportRequest.INDEPENDENT_ENCODING
    assert "acme" in request.default_words and "/books/0" in request.default_words
    assert all(not ca.words for ca in request.attributes)
    assert [b.values for b in decode_report(Decoder(), request)] == [record(i) for i in range(3)]


async def test_batches_of_at_most_max_entries(hub) -> None:
    hub.policy = policy = RecordingPolicy()
    batcher = batcher_for(hub.grpc.port)
    batcher.start()
    try:
        for i in range(250):
            assert batcher.add(record(i))
        await eventually(lambda: len(policy.reports) == 250)
    finally:
        await batcher.close()
    assert sorted(policy.batches, reverse=True)[:2] == [100, 100] and sum(policy.batches) == 250
    assert count(batcher, "sent") == 250


async def test_a_lone_record_leaves_after_max_delay(hub) -> None:
    hub.policy = policy = RecordingPolicy()
    batcher = batcher_for(hub.grpc.port, max_delay=0.2)
    batcher.start()
    try:
        batcher.add(record(1))
        await eventually(lambda: len(policy.reports) == 1)  # generous bound, no timing test
    finally:
        await batcher.close()
    assert policy.batches == [1]


async def test_a_full_buffer_drops_new_records_and_counts_them() -> None:
    batcher = batcher_for(free_port(), max_buffered=10, close_timeout=0.2)
    batcher.start()
    results = [batcher.add(record(i)) for i in range(15)]
    assert results == [True] * 10 + [False] * 5
    assert count(batcher, "dropped") == 5
    await batcher.close()  # the hub never came: the 10 buffered are counted too
    assert count(batcher, "dropped") == 15 and count(batcher, "sent") == 0


async def test_hub_down_then_up_delivers_everything(upstream) -> None:
    from tests.proxy_filter.conftest import start_hub

    port = free_port()
    batcher = batcher_for(port, retry_initial=0.05, retry_max=0.2)
    batcher.start()
    try:
        for i in range(30):
            batcher.add(record(i))
        await eventually(lambda: (batcher.metrics.registry.get_sample_value(
            "mixerhub_proxy_report_retries_total") or 0) >= 2)
        hub = await start_hub(config=None, grpc_port=port)
        hub.policy = policy = RecordingPolicy()
        try:
            await eventually(lambda: len(policy.reports) == 30)
        finally:
            await hub.stop()
    finally:
        await batcher.close()
    assert count(batcher, "sent") == 30 and count(batcher, "dropped") == 0


async def test_records_the_hub_refuses_are_counted_not_retried(hub) -> None:
    """A word beyond the hub's dictionary makes a batch malformed for it: rejected, counted,
    and the records after it still go."""
    hub.policy = policy = RecordingPolicy()
    longer = Encoder((*global_words(), "x-tenant"))
    batcher = batcher_for(hub.grpc.port, encoder=longer, max_entries=2, max_delay=0.05)
    batcher.start()
    try:
        batcher.add({"request.headers": {"x-tenant": "a"}})
        batcher.add({"request.path": "/fine"})
        await eventually(lambda: count(batcher, "rejected") == 2)
        batcher.encoder = Encoder()
        batcher.add({"request.path": "/after"})
        batcher.add({"request.path": "/bad", "response.headers": ["not", "a", "map"]})
        await eventually(lambda: len(policy.reports) == 1)
    finally:
        await batcher.close()
    assert policy.reports[0].values == {"request.path": "/after"}
    assert count(batcher, "rejected") == 3  # the unencodable one too
