"""`mixerhub diff --traffic kafka://BROKERS/TOPIC`: recorded checks read from a topic, from
its beginning to the end it had when the replay started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from diffkit import BASE, CANDIDATE, bag, base_code, combination, line, write_config

from mixerhub.diff.command import DiffOptions, run_diff
from mixerhub.diff.sources import SourceError, expand


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value, partition=0)
        await producer.flush()
    finally:
        await producer.stop()


async def test_a_topic_is_replayed_to_its_end_with_broken_records_placed(
        kafka_broker: Any, topic: str, tmp_path: Path) -> None:
    records = [line(i, bag(i), base_code(*combination(i))).rstrip(b"\n") for i in range(400)]
    records.insert(7, b"{not json")
    await produce(kafka_broker.bootstrap, topic, records)
    source = f"kafka://{kafka_broker.bootstrap}/{topic}"
    report = await run_diff(DiffOptions((write_config(tmp_path, "b.yaml", *BASE),),
                                        (write_config(tmp_path, "c.yaml", *CANDIDATE),),
                                        (source,)))
    # The same 400 checks as in the file tests: 110 change.
    assert (report.checks, report.changed, report.broken) == (400, 110, 1)
    assert report.broken_lines[0][0] == f"{source}[0]@7"
    assert report.broken_lines[0][1].startswith("not JSON: ")
    assert report.traffic == [source]


def test_a_bad_kafka_source_is_refused_before_anything_runs() -> None:
    with pytest.raises(SourceError, match="'nohost' is not HOST:PORT"):
        expand("kafka://nohost/topic")


async def test_an_unreachable_broker_is_a_source_error(tmp_path: Path) -> None:
    from tests.services._proc import free_port

    source = f"kafka://127.0.0.1:{free_port()}/t"
    with pytest.raises(SourceError, match="cannot read"):
        await run_diff(DiffOptions((write_config(tmp_path, "b.yaml", *BASE),),
                                   (write_config(tmp_path, "c.yaml", *BASE),), (source,)))
