"""Recorded checks in their own Kafka topic, read back for replay; and ``mixerhub tail``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kafkahub import DECISION_SCHEMA, kafka_config, report_bag, running_hub, write_config

from mixerhub.adapters.kafka.tail import summary, table_row
from mixerhub.app import Hub, Settings
from mixerhub.config.files import ConfigError
from mixerhub.decisions import read_decisions
from mixerhub.proxy_filter.mixer_client import MixerClient
from tests.services.kafka import consume


async def test_checks_are_recorded_to_a_topic_and_read_back(tansu_broker: Any, topic: str,
                                                            tmp_path: Path) -> None:
    config = write_config(tmp_path, kafka_config(tansu_broker.bootstrap, "reports"))
    async with running_hub(config, record_kafka=tansu_broker.bootstrap,
                           record_kafka_topic=topic, record_checks=str(tmp_path / "c.jsonl")
                           ) as hub:
        client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
        for i in range(20):
            await client.check({"request.path": f"/p/{i}",
                                "request.headers": {"cookie": "session=1"}})
        await client.close()
        records = await consume(tansu_broker.bootstrap, topic, 20)
    values = [json.loads(r.value) for r in records]
    assert all(not list(DECISION_SCHEMA.iter_errors(v)) for v in values)
    decided = list(read_decisions(r.value for r in records))
    assert sorted(d.values["request.path"] for d in decided) == sorted(
        f"/p/{i}" for i in range(20))
    assert all(d.values["request.headers"] == {"cookie": "[REDACTED]"} for d in decided)
    assert all(d.verdict.code == 0 for d in decided)
    file_lines = (tmp_path / "c.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in file_lines) == sorted(v["id"] for v in values)


async def test_a_bad_record_kafka_flag_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="--record-kafka: 'nowhere' is not HOST:PORT"):
        Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", record_kafka="nowhere"))


# ---- mixerhub tail -----------------------------------------------------------------------

async def test_tail_prints_json_lines_from_the_beginning(tansu_broker: Any, topic: str,
                                                         tmp_path: Path) -> None:
    config = write_config(tmp_path, kafka_config(tansu_broker.bootstrap, topic,
                                                 key="request.id"))
    async with running_hub(config) as hub:
        client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
        await client.report([report_bag(i) for i in range(3)])
        await client.close()
        await consume(tansu_broker.bootstrap, topic, 3)
    out = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "mixerhub", "tail", "--brokers", tansu_broker.bootstrap,
        "--topic", topic, "--from-beginning", "--count", "3"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(x["key"] for x in lines) == ["req-0", "req-1", "req-2"]
    assert {x["value"]["template"] for x in lines} == {"logentry"}
    assert all(set(x) == {"partition", "offset", "timestamp", "key", "value"} for x in lines)


def test_tail_says_when_brokers_cannot_be_reached() -> None:
    from tests.services._proc import free_port

    out = subprocess.run([sys.executable, "-m", "mixerhub", "tail", "--brokers",
                          f"127.0.0.1:{free_port()}", "--topic", "t"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "mixerhub tail: cannot reach 127.0.0.1:" in out.stderr


class Consumed:
    def __init__(self, value: dict[str, Any], key: bytes | None = b"k") -> None:
        self.partition, self.offset, self.timestamp = 2, 41, 1796040000000
        self.key, self.value = key, json.dumps(value).encode()


def test_the_table_summarises_records_and_checks() -> None:
    record = {"template": "metric", "instance": "rc.instance.ns", "fields": {"value": 1}}
    check = {"attributes": {"request.path": "/"}, "rules": ["r.ns"],
             "verdict": {"status": {"code": 7, "message": ""}}}
    assert summary(record) == 'rc.instance.ns {"value":1}'
    assert summary(check) == 'check code=7 rules=r.ns {"request.path":"/"}'
    row = table_row(Consumed(record), width=200)
    assert row.startswith("2026-11-30T12:00:00Z")
    assert "2/41" in row and row.endswith('rc.instance.ns {"value":1}')
    assert len(table_row(Consumed({"fields": "x" * 500}), width=80)) == 80
