"""A Report through a real hub becomes one JSON record per instance in a real broker
(tansu and Apache Kafka): schema-valid, keyed as configured, secrets redacted, counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2
from kafkahub import RECORD_SCHEMA, kafka_config, report_bag, running_hub, write_config

from mixerhub.proxy_filter.mixer_client import MixerClient
from tests.conftest import scrape
from tests.services.kafka import consume, topic_size

HOST = "reviews.default.svc.cluster.local"


async def test_a_report_is_one_schema_valid_record_keyed_as_configured(
        kafka_broker: Any, topic: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, kafka_config(kafka_broker.bootstrap, topic,
                                                 key="destination.service.host"))
    async with running_hub(config) as hub:
        client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
        await client.report([report_bag(1, **{
            "request.headers": {"authorization": "Bearer secret", "x-request-id": "r1"},
            "request.api_key": "key-123"})])
        await client.close()
        [record] = await consume(kafka_broker.bootstrap, topic, 1)
        metrics = await scrape(hub.http.port)
    assert await topic_size(kafka_broker.bootstrap, topic) == 1  # one record, not more
    value = json.loads(record.value)
    assert list(RECORD_SCHEMA.iter_errors(value)) == []
    assert record.key == HOST.encode()
    partitions = 3 if kafka_broker.kind == "apache" else None
    if partitions:  # Kafka's own partitioner: murmur2 of the key, as Java clients do
        assert record.partition == (murmur2(HOST.encode()) & 0x7FFFFFFF) % partitions
    assert value["template"] == "logentry"
    assert value["instance"] == "accesslog.instance.istio-system"
    assert value["handler"] == "telemetry.handler.istio-system"
    assert value["timestamp"] == "2026-11-30T12:00:00.001000Z"
    assert value["reporter"] == {"kind": "inbound"}
    variables = value["fields"]["variables"]
    assert variables["headers"] == {"authorization": "[REDACTED]", "x-request-id": "r1"}
    assert variables["apiKey"] == "[REDACTED]"
    assert (variables["requestId"], variables["sourceIp"], variables["latency"]) == (
        "req-1", "10.0.0.7", "0.012s")
    assert record.timestamp == 1796040000001  # the record's own time, in ms
    handler = 'handler="telemetry.handler.istio-system"'
    assert metrics[f'mixerhub_kafka_records_total{{{handler},result="sent"}}'] == 1
    assert metrics[f"mixerhub_kafka_buffered_records{{{handler}}}"] == 0


async def test_each_instance_of_a_report_is_a_record(tansu_broker: Any, topic: str,
                                                     tmp_path: Path) -> None:
    config = write_config(tmp_path, kafka_config(tansu_broker.bootstrap, topic,
                                                 instances="accesslog, requestcount"))
    async with running_hub(config) as hub:
        client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
        await client.report([report_bag(i) for i in range(50)])
        await client.report([report_bag(99, **{"context.protocol": "tcp"})])  # no rule
        await client.close()
        records = await consume(tansu_broker.bootstrap, topic, 100)
    values = [json.loads(r.value) for r in records]
    assert sorted(v["template"] for v in values) == ["logentry"] * 50 + ["metric"] * 50
    assert all(not list(RECORD_SCHEMA.iter_errors(v)) for v in values)
    assert len({v["id"] for v in values}) == 100
    assert all(r.key is None for r in records)  # no key configured
    metric = next(v for v in values if v["template"] == "metric")
    assert metric["fields"] == {"value": 1, "dimensions": {"destination": HOST, "code": 200}}
    assert metric["instance"] == "requestcount.instance.istio-system"


async def test_a_key_that_cannot_be_evaluated_means_no_key(tansu_broker: Any, topic: str,
                                                           tmp_path: Path) -> None:
    config = write_config(tmp_path, kafka_config(tansu_broker.bootstrap, topic,
                                                 key="source.principal"))
    async with running_hub(config) as hub:
        client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
        await client.report([report_bag(1), report_bag(2, **{"source.principal": "alice"})])
        await client.close()
        records = await consume(tansu_broker.bootstrap, topic, 2)
    assert sorted((r.key or b"") for r in records) == [b"", b"alice"]
