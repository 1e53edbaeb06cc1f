"""Recorded checks from a Kafka topic (``--record-kafka``): every partition from its
beginning to the end offset it had when the replay started, so a replay of a topic that
is still being written to ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from mixerhub.diff.sources import KAFKA_PREFIX, Batch, SourceError

_MAX_RECORDS = 5_000


class KafkaSource:
    def __init__(self, brokers: list[str], topic: str, idle_timeout: float = 30.0) -> None:
        self.brokers = brokers
        self.topic = topic
        self.name = f"{KAFKA_PREFIX}{','.join(brokers)}/{topic}"
        self.idle_timeout = idle_timeout
        self._consumer: Any = None
        self._end: dict[Any, int] = {}

    @classmethod
    def parse(cls, spec: str) -> KafkaSource:
        """``kafka://HOST:PORT[,HOST:PORT]/TOPIC``, checked as the Kafka adapter checks its
        ``brokers`` and ``topic``."""
        from pydantic import ValidationError

        from mixerhub.adapters.kafka.params import KafkaParams

        brokers_text, _, topic = spec[len(KAFKA_PREFIX):].partition("/")
        brokers = [b.strip() for b in brokers_text.split(",") if b.strip()]
        try:
            KafkaParams.model_validate({"brokers": brokers, "topic": topic})
        except ValidationError as exc:
            problems = "; ".join(str(e["msg"]).removeprefix("Value error, ")
                                 for e in exc.errors())
            raise SourceError(f"{spec}: {problems} (want kafka://HOST:PORT[,HOST:PORT]/TOPIC)"
                              ) from None
        return cls(brokers, topic)

    async def open(self) -> int:
        from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
        from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

        # Subscribed without a group: start() waits for the topic's metadata and assigns
        # every partition (as `mixerhub tail` consumes).
        self._consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.brokers,
                                          group_id=None, enable_auto_commit=False,
                                          auto_offset_reset="earliest")
        try:
            await self._consumer.start()
            parts = sorted(self._consumer.assignment(), key=lambda p: p.partition)
            if not parts:
                raise SourceError(f"{self.name}: no such topic")
            begin = await self._consumer.beginning_offsets(parts)
            self._end = await self._consumer.end_offsets(parts)
        except (KafkaError, OSError) as exc:
            await self.close()
            raise SourceError(f"{self.name}: cannot read: {exc}") from None
        except SourceError:
            await self.close()
            raise
        for part in parts:
            self._consumer.seek(part, begin[part])
        return sum(e - begin[p] for p, e in self._end.items())

    async def batches(self) -> AsyncIterator[Batch]:
        """Each partition up to its end offset at the start. Some brokers (tansu) answer
        ListOffsets with too low an end, so the high watermark of the first fetch
        response raises it (it is never lowered)."""
        remaining, done, idle = set(self._end), 0, 0.0
        confirmed: set[Any] = set()
        while remaining:
            got = await self._consumer.getmany(*remaining, timeout_ms=500,
                                               max_records=_MAX_RECORDS)
            idle = 0.0 if got else idle + 0.5
            if idle >= self.idle_timeout:
                raise SourceError(f"{self.name}: no records for {idle:.0f} s before the end "
                                  "offsets were reached")
            for part in remaining - confirmed:
                high = self._consumer.highwater(part)
                if high is not None:
                    self._end[part] = max(self._end[part], high)
                    confirmed.add(part)
            for part, records in got.items():
                batch = self._batch(part, records)
                done += len(batch.lines)
                batch.done = done
                yield batch
            remaining = {p for p in remaining if p not in confirmed
                         or await self._consumer.position(p) < self._end[p]}

    def _batch(self, part: Any, records: list[Any]) -> Batch:
        end = self._end[part]
        kept = [r for r in records if r.offset < end]
        return Batch(self.name, [r.value or b"" for r in kept],
                     positions=[f"[{part.partition}]@{r.offset}" for r in kept])

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await asyncio.shield(consumer.stop())
