"""The Kafka sink of recorded checks: each decision event (``hub/decisions.py``) as one
record in its own topic, delivered like the adapter's records (buffer, spool, retries)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from mixerhub.adapters.kafka.delivery import Delivery
from mixerhub.adapters.kafka.params import KafkaParams
from mixerhub.adapters.kafka.records import OutRecord
from mixerhub.logs import get_logger
from mixerhub.metrics import Metrics

#: The ``handler`` label of this sink's Kafka metrics.
METRICS_NAME = "decisions"


class KafkaDecisionSink:
    """Writes decision events to ``topic``; records have no key (spread over partitions)."""

    name = "kafka"

    def __init__(self, brokers: str | Sequence[str], topic: str, spool_dir: str | None,
                 metrics: Metrics, **params: Any) -> None:
        servers = brokers.split(",") if isinstance(brokers, str) else list(brokers)
        # A full buffer with no room in a spool drops the oldest: checks never wait.
        self.params = KafkaParams.model_validate({
            "brokers": [s.strip() for s in servers if s.strip()], "topic": topic,
            "spoolDir": spool_dir, "fullPolicy": "drop-oldest", **params})
        self.delivery = Delivery(METRICS_NAME, self.params, metrics,
                                 get_logger("mixerhub.decisions.kafka"))

    async def start(self) -> None:
        await self.delivery.start()

    async def write(self, lines: Sequence[bytes]) -> None:
        now = int(time.time() * 1000)
        await self.delivery.put([OutRecord(None, line, now) for line in lines])

    async def stop(self) -> None:
        await self.delivery.stop()
