"""Delivery when things go wrong: brokers that are down (a port nobody listens on), a full
buffer under each policy, the spool taking over, records too big, a config reload handing
the spool over, SASL and TLS against a real Apache Kafka."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from kafkahub import kafka_config, report_bag, request_ids, running_hub, write_config
from prometheus_client import CollectorRegistry

from mixerhub.adapter import AdapterEnv, Status
from mixerhub.adapters.kafka import KafkaAdapter, KafkaParams
from mixerhub.adapters.kafka.delivery import spool_directory
from mixerhub.adapters.kafka.spool import Spool
from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.templates.instance import Instance
from tests.services._proc import free_port
from tests.services.kafka import SASL_PASSWORD, SASL_USER, ApacheKafka, consume

HANDLER = "telemetry.handler.istio-system"


def adapter(brokers: str, **params: Any) -> tuple[KafkaAdapter, CollectorRegistry]:
    registry = CollectorRegistry()
    env = AdapterEnv(handler=HANDLER, registry=registry, logger=structlog.get_logger())
    values = {"brokers": [brokers], "topic": params.pop("topic", "t"),
              "retryBackoffMs": 50, "maxRetryBackoffMs": 200, "requestTimeoutMs": 2000,
              "flushTimeoutMs": 2000, **params}
    return KafkaAdapter(KafkaParams.model_validate(values), env), registry


def count(registry: CollectorRegistry, result: str) -> float:
    value = registry.get_sample_value("mixerhub_kafka_records_total",
                                      {"handler": HANDLER, "result": result})
    return value or 0.0


def buffered(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("mixerhub_kafka_buffered_records",
                                     {"handler": HANDLER}) or 0.0


def logs(n: int, start: int = 0) -> list[Instance]:
    return [Instance("accesslog.instance.istio-system", "logentry",
                     {"variables": {"requestId": f"req-{i}", "pad": "x" * 100}})
            for i in range(start, start + n)]


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout:.0f} s"
        await asyncio.sleep(0.05)


def nobody() -> str:
    """A 127.0.0.1 port no broker listens on: a broker that is down."""
    return f"127.0.0.1:{free_port()}"


async def test_down_brokers_drop_oldest_keeps_the_buffer_bounded_and_counts() -> None:
    kafka, registry = adapter(nobody(), bufferRecords=10, fullPolicy="drop-oldest")
    await kafka.start()
    peak = 0.0
    for start in range(0, 100, 10):
        await kafka.report(logs(10, start))
        peak = max(peak, buffered(registry))
    await eventually(lambda: kafka.status is Status.ERROR, "status ERROR")
    await kafka.stop()
    assert peak <= 10
    assert count(registry, "sent") == 0
    assert count(registry, "dropped") == 100  # 90 while running, 10 at stop (no spool)
    assert kafka.status is Status.NOT_READY


async def test_down_brokers_block_waits_then_drops_what_does_not_fit() -> None:
    kafka, registry = adapter(nobody(), bufferRecords=10, fullPolicy="block", maxBlockMs=50)
    await kafka.start()
    await kafka.report(logs(30))
    assert buffered(registry) == 10
    assert count(registry, "dropped") == 20
    await kafka.stop()


async def test_down_brokers_the_spool_takes_everything_and_memory_stays_bounded(
        tmp_path: Path) -> None:
    kafka, registry = adapter(nobody(), bufferRecords=50, spoolDir=str(tmp_path))
    await kafka.start()
    peak = 0.0
    for start in range(0, 1000, 25):
        await kafka.report(logs(25, start))
        peak = max(peak, buffered(registry))
    await kafka.stop()
    assert peak <= 50
    assert count(registry, "dropped") == 0
    assert count(registry, "spooled") == 1000
    spool = Spool(spool_directory(str(tmp_path), HANDLER), 1 << 30)
    assert spool.open()
    kept = []
    while (segment := spool.oldest()) is not None:
        kept += [json.loads(r.value)["fields"]["variables"]["requestId"]
                 for r in segment.records]
        spool.remove(segment.seq)
    assert kept == [f"req-{i}" for i in range(1000)]  # every record, in order


async def test_a_record_bigger_than_a_batch_is_dropped_the_rest_delivered(
        tansu_broker: Any, topic: str) -> None:
    kafka, registry = adapter(tansu_broker.bootstrap, topic=topic, maxBatchBytes=2048)
    await kafka.start()
    huge = Instance("accesslog.instance.istio-system", "logentry",
                    {"variables": {"requestId": "huge", "pad": "x" * 5000}})
    await kafka.report([*logs(2), huge, *logs(2, 2)])
    records = await consume(tansu_broker.bootstrap, topic, 4, timeout=30)
    await kafka.stop()
    assert sorted(request_ids(records)) == ["req-0", "req-1", "req-2", "req-3"]
    assert (count(registry, "sent"), count(registry, "dropped")) == (4, 1)


async def test_a_reload_hands_the_spool_over_without_losing_a_record(
        tansu_broker: Any, topic: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, kafka_config(tansu_broker.bootstrap, topic,
                                                 spoolDir=str(tmp_path / "spool")))
    async with running_hub(config) as hub:
        client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
        await client.report([report_bag(i) for i in range(100)])
        Path(config).write_text(Path(config).read_text().replace("lingerMs", "lingerMs"))
        assert await hub.reload("test")
        await client.report([report_bag(i) for i in range(100, 200)])
        await client.close()
        records = await consume(tansu_broker.bootstrap, topic, 200)
    assert sorted(set(request_ids(records))) == sorted(f"req-{i}" for i in range(200))


# ---- security options against a real broker ---------------------------------------------

async def test_sasl_plain_delivers_with_the_right_password(apache_kafka: ApacheKafka,
                                                           topic: str) -> None:
    kafka, registry = adapter(f"127.0.0.1:{apache_kafka.sasl_port}", topic=topic,
                              securityProtocol="SASL_PLAINTEXT",
                              sasl={"username": SASL_USER, "password": SASL_PASSWORD})
    await kafka.start()
    await kafka.report(logs(3))
    records = await consume(apache_kafka.bootstrap, topic, 3)
    await kafka.stop()
    assert sorted(request_ids(records)) == ["req-0", "req-1", "req-2"]
    assert count(registry, "sent") == 3


async def test_a_wrong_sasl_password_delivers_nothing_and_says_so(
        apache_kafka: ApacheKafka, topic: str, tmp_path: Path) -> None:
    kafka, registry = adapter(f"127.0.0.1:{apache_kafka.sasl_port}", topic=topic,
                              securityProtocol="SASL_PLAINTEXT", spoolDir=str(tmp_path),
                              sasl={"username": SASL_USER, "password": "wrong"})
    await kafka.start()
    await kafka.report(logs(3))
    await eventually(lambda: kafka.status is Status.ERROR, "status ERROR")
    await kafka.stop()
    assert count(registry, "sent") == 0
    assert count(registry, "spooled") == 3  # kept for when the credentials are fixed


async def test_tls_delivers_to_a_broker_whose_certificate_is_trusted(
        apache_kafka: ApacheKafka, topic: str) -> None:
    kafka, registry = adapter(f"127.0.0.1:{apache_kafka.ssl_port}", topic=topic,
                              securityProtocol="SSL", tls={"caFile": str(apache_kafka.ca_file)})
    await kafka.start()
    await kafka.report(logs(2))
    records = await consume(apache_kafka.bootstrap, topic, 2)
    await kafka.stop()
    assert sorted(request_ids(records)) == ["req-0", "req-1"]


@pytest.mark.parametrize("compression", ["gzip"])
async def test_compressed_records_read_back_the_same(tansu_broker: Any, topic: str,
                                                     compression: str) -> None:
    kafka, registry = adapter(tansu_broker.bootstrap, topic=topic, compression=compression)
    await kafka.start()
    await kafka.report(logs(20))
    records = await consume(tansu_broker.bootstrap, topic, 20)
    await kafka.stop()
    assert request_ids(records) == [f"req-{i}" for i in range(20)]
