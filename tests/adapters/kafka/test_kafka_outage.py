"""Apache Kafka stopped under steady report traffic, and a hub restarted with records still
in its spool: every report arrives (unique request ids counted), memory stays within its
limit, checks keep being answered. Runs on Apache Kafka, which keeps its data across a
restart (tansu does not)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from kafkahub import kafka_config, report_bag, request_ids, running_hub, write_config

from mixerhub.adapters.kafka.delivery import spool_directory
from mixerhub.adapters.kafka.spool import Spool
from mixerhub.app import Hub
from mixerhub.proxy_filter.mixer_client import MixerClient
from tests.conftest import scrape
from tests.services.kafka import ApacheKafka, consume

HANDLER = "telemetry.handler.istio-system"
BUFFER = 500
#: How long Kafka stays down (the issue asks for 60 s; MIXERHUB_KAFKA_OUTAGE_S shortens it
#: for a quick local run).
OUTAGE_S = float(os.environ.get("MIXERHUB_KAFKA_OUTAGE_S", "60"))


def outage_params(spool: Path) -> dict[str, object]:
    return {"key": "request.id", "spoolDir": str(spool), "bufferRecords": BUFFER,
            "requestTimeoutMs": 5000, "retryBackoffMs": 100, "maxRetryBackoffMs": 2000}


class Traffic:
    """Reports at a steady pace (5 bags every 50 ms), checks now and then, and the
    buffered-records gauge sampled all along."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
        self.sent = 0
        self.checks_answered = 0
        self.peak_buffered = 0.0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._reports()), asyncio.create_task(self._checks()),
                       asyncio.create_task(self._sample())]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self.client.close()

    async def _reports(self) -> None:
        while not self._stop.is_set():
            await self.client.report([report_bag(i) for i in range(self.sent, self.sent + 5)])
            self.sent += 5
            await asyncio.sleep(0.05)

    async def _checks(self) -> None:
        while not self._stop.is_set():
            result = await self.client.check({"request.path": "/"}, timeout=10)
            self.checks_answered += result.verdict.ok
            await asyncio.sleep(0.5)

    async def _sample(self) -> None:
        registry = self.hub.metrics.registry
        while not self._stop.is_set():
            now = registry.get_sample_value("mixerhub_kafka_buffered_records",
                                            {"handler": HANDLER}) or 0.0
            self.peak_buffered = max(self.peak_buffered, now)
            await asyncio.sleep(0.02)


async def test_kafka_down_for_a_minute_under_traffic_loses_no_report(
        apache_kafka: ApacheKafka, topic: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, kafka_config(apache_kafka.bootstrap, topic,
                                                 **outage_params(tmp_path / "spool")))
    async with running_hub(config) as hub:
        traffic = Traffic(hub)
        traffic.start()
        await asyncio.sleep(5)
        await asyncio.to_thread(apache_kafka.stop)
        down_at, checks_before = time.monotonic(), traffic.checks_answered
        await asyncio.sleep(OUTAGE_S)
        during = await scrape(hub.http.port)
        checks_during = traffic.checks_answered - checks_before
        await asyncio.to_thread(apache_kafka.start)
        down_for = time.monotonic() - down_at
        await asyncio.sleep(5)
        await traffic.stop()
        records = await consume(apache_kafka.bootstrap, topic, traffic.sent, timeout=120)
        after = await scrape(hub.http.port)
    ids = request_ids(records)
    label = f'handler="{HANDLER}"'
    spooled = after[f'mixerhub_kafka_records_total{{{label},result="spooled"}}']
    print(f"outage {down_for:.0f} s: {traffic.sent} reports, {len(ids)} records "
          f"({len(ids) - len(set(ids))} duplicates), peak buffered "
          f"{traffic.peak_buffered:.0f}/{BUFFER}, spooled {spooled:.0f}, "
          f"checks answered while down {checks_during}")
    assert down_for >= OUTAGE_S
    assert set(ids) == {f"req-{i}" for i in range(traffic.sent)}, (
        f"{traffic.sent - len(set(ids))} of {traffic.sent} reports missing")
    assert traffic.sent > 2 * BUFFER  # the outage alone held more than memory could
    assert traffic.peak_buffered <= BUFFER
    assert during[f'mixerhub_kafka_records_total{{{label},result="spooled"}}'] > 0
    assert after[f'mixerhub_kafka_records_total{{{label},result="dropped"}}'] == 0
    assert checks_during >= OUTAGE_S / 0.5 / 2  # checks were answered all along


async def test_a_hub_restarted_with_records_in_its_spool_loses_none(
        apache_kafka: ApacheKafka, topic: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    config = write_config(tmp_path, kafka_config(apache_kafka.bootstrap, topic,
                                                 **outage_params(spool_dir)))
    await asyncio.to_thread(apache_kafka.stop)
    try:
        async with running_hub(config) as hub:  # Kafka is down
            client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
            for start in range(0, 2000, 50):
                await client.report([report_bag(i) for i in range(start, start + 50)])
            await client.close()
        spool = Spool(spool_directory(str(spool_dir), HANDLER), 1 << 30)
        assert spool.open()  # the stopped hub released it
        spooled = spool.size
        spool.close()
        assert spooled > 0
    finally:
        await asyncio.to_thread(apache_kafka.start)
    spool_bytes = f'mixerhub_kafka_spool_bytes{{handler="{HANDLER}"}}'
    async with running_hub(config) as hub:  # a new hub replays the spool on start
        records = await consume(apache_kafka.bootstrap, topic, 2000, timeout=120)
        # A segment leaves the spool after its acknowledgement: a consumer may read the
        # records a moment before the hub has removed the file.
        deadline = time.monotonic() + 30
        while (metrics := await scrape(hub.http.port))[spool_bytes] and \
                time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    assert set(request_ids(records)) == {f"req-{i}" for i in range(2000)}
    assert metrics[f'mixerhub_kafka_records_total{{handler="{HANDLER}",result="sent"}}'] >= 2000
    assert metrics[spool_bytes] == 0
