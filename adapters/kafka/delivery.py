"""Delivery: a bounded buffer in memory, a sender to the brokers, a spool for the rest.

Records wait in memory (queued, or in flight to the brokers) up to ``bufferRecords`` and
``bufferBytes``. The sender batches them per partition, waits for the brokers'
acknowledgement and only then forgets them (at-least-once). When memory fills up, or the
brokers fail, records move to the on-disk spool; the sender replays the spool, oldest
first, before anything newer. Only when the spool is missing or full does ``fullPolicy``
decide: ``block`` (a report waits up to ``maxBlockMs``, then its records are dropped) or
``drop-oldest``. Every record ends in one of the counted results of
``mixerhub_kafka_records_total``: sent, spooled (then sent later), dropped; ``failed``
counts send attempts that did not succeed (those records are retried).

Nothing here blocks the event loop: spool files are touched from one worker thread.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mixerhub.adapters.kafka.params import KafkaParams
from mixerhub.adapters.kafka.records import OutRecord
from mixerhub.adapters.kafka.spool import Spool
from mixerhub.metrics import Metrics

T = TypeVar("T")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_SPILL_WAIT = 5.0  # seconds put() waits for a spill before the full policy applies
_LOG_EVERY = 30.0  # seconds between repeated "still failing" warnings
_KEY_CACHE = 4096
# Broker answers that no retry can change: the records are dropped, counted and logged.
_REFUSALS = frozenset({"MessageSizeTooLargeError", "RecordListTooLargeError",
                       "RecordTooLargeError", "CorruptRecordException"})


def spool_directory(root: str, name: str) -> Path:
    """The spool folder of one handler (or sink) inside ``spoolDir``."""
    return Path(root) / _SAFE.sub("_", name)


class Delivery:
    """Delivers OutRecords to one topic. ``name`` labels the metrics (a handler's name)."""

    def __init__(self, name: str, params: KafkaParams, metrics: Metrics, log: Any,
                 on_health: Callable[[bool], None] = lambda healthy: None,
                 producer_factory: Callable[..., Any] | None = None) -> None:
        self.name = name
        self.params = params
        self.log = log
        self.healthy = False
        self._on_health = on_health
        self._factory = producer_factory
        self._queue: collections.deque[OutRecord] = collections.deque()
        self._queue_bytes = 0
        self._held = 0  # records out of the queue but still in memory (in flight, spilling)
        self._held_bytes = 0
        self._to_disk = 0  # records being written to the spool (held meanwhile)
        self._inflight: list[OutRecord] = []  # queued records in flight (not spool ones)
        self._chunk = max(1, min(params.bufferRecords // 2, 5_000))
        self._chunk_bytes = max(1, params.bufferBytes // 2)
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._spill_wanted = asyncio.Event()
        self._stopping = False
        self._gave_up = False  # a delivery failed while stopping: spool the rest
        self._sender: asyncio.Task[None] | None = None
        self._producer: Any = None
        self._partitions: list[int] = []
        self._key_partition: dict[str | None, int] = {}
        self._sticky = 0
        self._spool: Spool | None = None
        self._spool_ready = False
        self._spool_full = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_warning = 0.0
        self._count = {result: metrics.kafka_records.labels(name, result)
                       for result in ("sent", "failed", "spooled", "dropped")}
        self._buffered = metrics.kafka_buffered.labels(name)
        self._spool_bytes = metrics.kafka_spool_bytes.labels(name)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the sender; never waits for, or fails on, an unreachable broker."""
        if self.params.spoolDir is not None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="mixerhub-kafka-spool")
            self._spool = Spool(spool_directory(self.params.spoolDir, self.name),
                                self.params.maxSpoolBytes,
                                min(1 << 20, max(65_536, self.params.bufferBytes // 4)))
            # A local directory, not a broker: opened before the first report arrives.
            if await self._try_open():
                self._spool_opened()
            else:
                self._tasks.append(asyncio.create_task(self._open_spool()))
            self._tasks.append(asyncio.create_task(self._spill_loop()))
        self._sender = asyncio.create_task(self._send_loop())
        self._tasks.append(self._sender)

    async def stop(self) -> None:
        """Flush: deliver what is in memory within ``flushTimeoutMs``; spool the rest (or
        count it dropped without a spool); close the producer and the spool."""
        self._stopping = True
        self._wake.set()
        self._spill_wanted.set()
        if self._sender is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._sender),
                                       self.params.flushTimeoutMs / 1000)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._save_leftovers()
        await self._close_producer()
        if self._spool is not None and self._executor is not None:
            await self._in_thread(self._spool.close)
            self._executor.shutdown(wait=True)
        self._update_gauges()

    async def _save_leftovers(self) -> None:
        leftovers = self._inflight + list(self._queue)
        self._inflight, self._held, self._held_bytes = [], 0, 0
        self._queue.clear()
        self._queue_bytes = 0
        if not leftovers:
            return
        written = await self._to_spool(leftovers) if self._spool_ready else 0
        if written < len(leftovers):
            lost = len(leftovers) - written
            self._count["dropped"].inc(lost)
            self.log.error("kafka: records lost at shutdown (no room in a spool)",
                           handler=self.name, records=lost)

    # -- the report side -----------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Records in memory: queued, in flight, being spilled."""
        return len(self._queue) + self._held

    async def put(self, records: Sequence[OutRecord]) -> None:
        """Queue records. Waits only while a spill makes room, or (fullPolicy block) up to
        maxBlockMs; never for a broker."""
        p = self.params
        size = sum(r.size for r in records)
        if (self.buffered + len(records) <= p.bufferRecords
                and self._queue_bytes + self._held_bytes + size <= p.bufferBytes):
            self._queue.extend(records)  # the usual case: all fit, no per-record checks
            self._queue_bytes += size
            self._wake.set()
            self._update_gauges()
            return
        deadline = 0.0
        for index, record in enumerate(records):
            if not self._fits(record):
                deadline = deadline or time.monotonic() + self.params.maxBlockMs / 1000
                if not await self._make_room(record, deadline):
                    self._drop(len(records) - index, "buffer full")
                    break
            self._queue.append(record)
            self._queue_bytes += record.size
        self._wake.set()
        self._update_gauges()

    def _fits(self, record: OutRecord) -> bool:
        p = self.params
        return (self.buffered < p.bufferRecords
                and self._queue_bytes + self._held_bytes + record.size <= p.bufferBytes)

    async def _make_room(self, record: OutRecord, deadline: float) -> bool:
        while not self._fits(record):
            if record.size > self.params.bufferBytes:
                return False
            if (self._can_spill() or self._to_disk) and await self._wait_for_space(_SPILL_WAIT):
                continue  # the spool makes room: wait for it, under either policy
            if self.params.fullPolicy == "drop-oldest" and self._queue:
                oldest = self._queue.popleft()
                self._queue_bytes -= oldest.size
                self._drop(1, "buffer full, oldest dropped")
            elif self.params.fullPolicy == "block" and time.monotonic() < deadline:
                await self._wait_for_space(deadline - time.monotonic())
            else:
                return False
        return True

    def _can_spill(self) -> bool:
        return self._spool_ready and not self._spool_full and bool(self._queue)

    async def _wait_for_space(self, timeout: float) -> bool:
        self._space.clear()
        if self._can_spill():
            self._spill_wanted.set()
        try:
            await asyncio.wait_for(self._space.wait(), max(timeout, 0.0))
        except asyncio.TimeoutError:
            return False
        return True

    def _drop(self, count: int, why: str) -> None:
        self._count["dropped"].inc(count)
        self._warn(f"kafka: records dropped, {why}", records=count)

    def _freed(self) -> None:
        self._space.set()
        self._update_gauges()

    def _update_gauges(self) -> None:
        self._buffered.set(self.buffered)
        if self._spool is not None:
            self._spool_bytes.set(self._spool.size)

    # -- the spool -----------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def _open_spool(self) -> None:
        """Take the spool's lock; while another holder has it (a replaced adapter still
        flushing, another process), retry every second and run without a spool."""
        assert self._spool is not None
        waited = False
        while not await self._try_open():
            if not waited:
                self.log.warning("kafka: spool in use, running without it until it is "
                                 "free", handler=self.name,
                                 directory=str(self._spool.directory))
                waited = True
            await asyncio.sleep(1.0)
        self._spool_opened()

    def _spool_opened(self) -> None:
        assert self._spool is not None
        self._spool_ready = True
        self._wake.set()
        self._update_gauges()
        if self._spool:
            self.log.info("kafka: spool holds records from before, replaying",
                          handler=self.name, bytes=self._spool.size)

    async def _try_open(self) -> bool:
        assert self._spool is not None
        try:
            return await self._in_thread(self._spool.open)
        except OSError as exc:
            self._warn("kafka: cannot open the spool, retrying", error=str(exc),
                       directory=str(self._spool.directory))
            return False

    async def _spill_loop(self) -> None:
        while not self._stopping:
            await self._spill_wanted.wait()
            self._spill_wanted.clear()
            if self._spool_ready and self._queue and not self._stopping:
                await self._spill()

    async def _spill(self) -> None:
        """Move every queued record to the spool (what does not fit goes back)."""
        records = list(self._queue)
        size = self._queue_bytes
        self._queue.clear()
        self._queue_bytes = 0
        self._held += len(records)
        self._held_bytes += size
        try:
            written = await self._to_spool(records)
        finally:
            self._held -= len(records)
            self._held_bytes -= size
        rest = records[written:]
        self._queue.extendleft(reversed(rest))
        self._queue_bytes += sum(r.size for r in rest)
        self._freed()

    async def _to_spool(self, records: list[OutRecord]) -> int:
        assert self._spool is not None
        self._to_disk += len(records)
        try:
            written = await self._in_thread(self._spool.append, records)
        except OSError as exc:
            self.log.error("kafka: spool write failed", handler=self.name, error=str(exc))
            written = 0
        finally:
            self._to_disk -= len(records)
        self._count["spooled"].inc(written)
        if written < len(records) and not self._spool_full:
            self._spool_full = True
            self.log.error("kafka: spool full", handler=self.name,
                           limit=self.params.maxSpoolBytes)
        self._update_gauges()
        return written

    # -- the sender ----------------------------------------------------------------------

    async def _send_loop(self) -> None:
        backoff = self.params.retryBackoffMs / 1000
        while True:
            if self._stopping and (not self._queue or self._gave_up):
                return
            if not await self._connected(backoff):
                return
            if await self._send_next():
                backoff = self.params.retryBackoffMs / 1000
            elif self._stopping:
                self._gave_up = True
            else:
                await self._pause(backoff)
                backoff = min(backoff * 2, self.params.maxRetryBackoffMs / 1000)

    async def _pause(self, seconds: float) -> None:
        """Wait before trying again; meanwhile what is queued goes to the spool."""
        if self._can_spill():
            self._spill_wanted.set()
        if not self._stopping:
            await asyncio.sleep(seconds)

    async def _connected(self, backoff: float) -> bool:
        while self._producer is None:
            if self._stopping:
                return False
            producer = self._new_producer()
            try:
                await producer.start()
            except Exception as exc:  # noqa: BLE001 - any start failure: retry later
                with contextlib.suppress(Exception):
                    await producer.stop()
                self._unhealthy("kafka: cannot connect, retrying", exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, self.params.maxRetryBackoffMs / 1000)
            else:
                self._producer = producer
                self._recovered()
        return True

    def _new_producer(self) -> Any:
        if self._factory is not None:
            return self._factory(**self.params.producer_options())
        from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

        return AIOKafkaProducer(**self.params.producer_options())

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.params.requestTimeoutMs / 1000)

    async def _send_next(self) -> bool:
        """Send the spool's oldest segment, or else what is queued; True on success."""
        if self._spool_ready and self._spool and not self._stopping:
            return await self._send_segment()
        records = await self._take()
        if not records:
            return True
        failed = await self._deliver(records, from_queue=True)
        if failed:
            await self._requeue(failed)
            return False
        return True

    async def _take(self) -> list[OutRecord]:
        if not self._queue:
            self._wake.clear()
            if self._stopping:
                return []
            await self._wake.wait()
            if len(self._queue) < self._chunk and self.params.lingerMs and not self._stopping:
                await asyncio.sleep(self.params.lingerMs / 1000)
        records: list[OutRecord] = []
        size = 0
        while self._queue and len(records) < self._chunk and size < self._chunk_bytes:
            record = self._queue.popleft()
            records.append(record)
            size += record.size
        self._queue_bytes -= size
        return records

    async def _send_segment(self) -> bool:
        assert self._spool is not None
        segment = await self._in_thread(self._spool.oldest)
        if segment is None:
            return True
        if segment.bad_lines:
            self._count["dropped"].inc(segment.bad_lines)
            self.log.error("kafka: unreadable spool lines skipped", handler=self.name,
                           lines=segment.bad_lines, segment=segment.seq)
        for start in range(0, len(segment.records), self._chunk):
            if await self._deliver(segment.records[start:start + self._chunk]):
                return False  # the segment stays; it is sent again, whole, later
        await self._in_thread(self._spool.remove, segment.seq)
        self._spool_full = False
        self._freed()
        return True

    async def _requeue(self, records: list[OutRecord]) -> None:
        """Records whose send failed: to the spool, or back to the front of the queue."""
        if self._spool_ready:
            self._held += len(records)  # still in memory until written
            self._held_bytes += sum(r.size for r in records)
            try:
                written = await self._to_spool(records)
            finally:
                self._held -= len(records)
                self._held_bytes -= sum(r.size for r in records)
            records = records[written:]
        self._queue.extendleft(reversed(records))
        self._queue_bytes += sum(r.size for r in records)
        self._freed()

    # -- one delivery --------------------------------------------------------------------

    async def _deliver(self, records: list[OutRecord], from_queue: bool = False
                       ) -> list[OutRecord]:
        """Send records and wait for their acknowledgement; returns those not delivered.
        Queued records in flight are saved by stop() if it has to cut the send short."""
        if from_queue:
            self._inflight = records
        self._held += len(records)
        held_bytes = sum(r.size for r in records)
        self._held_bytes += held_bytes
        self._update_gauges()
        try:
            sent, failed, error = await self._produce(records)
        finally:
            self._inflight = []
            self._held -= len(records)
            self._held_bytes -= held_bytes
        self._count["sent"].inc(sent)
        if failed:
            self._count["failed"].inc(len(failed))
            self._unhealthy("kafka: delivery failed, retrying", error)
        else:
            self._recovered()
        self._freed()
        return failed

    async def _produce(self, records: list[OutRecord]
                       ) -> tuple[int, list[OutRecord], BaseException | None]:
        """(records acknowledged, records not delivered, the first error)."""
        timeout = self.params.requestTimeoutMs / 1000
        producer = self._producer
        try:
            partitions = sorted(await asyncio.wait_for(
                producer.partitions_for(self.params.topic), timeout))
        except Exception as exc:  # noqa: BLE001 - metadata failures mean "retry later"
            return 0, records, exc
        if partitions != self._partitions:
            self._partitions, self._key_partition = partitions, {}
        self._sticky = (self._sticky + 1) % len(partitions)
        batches = self._batches(producer, records)
        sends: list[tuple[Any, list[OutRecord]]] = []
        refused: BaseException | None = None
        for index, (partition, batch, held) in enumerate(batches):
            try:
                future = await producer.send_batch(batch, self.params.topic,
                                                   partition=partition)
            except Exception as exc:  # noqa: BLE001 - the producer refused: retry later
                refused = exc
                unsent = [r for _, _, rest in batches[index:] for r in rest]
                break
            sends.append((future, held))
        else:
            unsent = []
        sent, failed, error = await self._settle(sends, 2 * timeout)
        return sent, failed + unsent, refused or error

    async def _settle(self, sends: list[tuple[Any, list[OutRecord]]], timeout: float
                      ) -> tuple[int, list[OutRecord], BaseException | None]:
        if not sends:
            return 0, [], None
        await asyncio.wait([future for future, _ in sends], timeout=timeout)
        sent, failed = 0, []
        error: BaseException | None = None
        for future, held in sends:
            if not future.done():
                problem: BaseException | None = asyncio.TimeoutError(
                    "no acknowledgement in time")
            elif future.cancelled():
                problem = asyncio.CancelledError()
            else:
                problem = future.exception()
            if problem is None:
                sent += len(held)
            elif type(problem).__name__ in _REFUSALS:
                self._drop(len(held), f"refused by the broker: {_describe(problem)}")
            else:
                error = error or problem
                failed += held
        return sent, failed, error

    def _batches(self, producer: Any, records: list[OutRecord]
                 ) -> list[tuple[int, Any, list[OutRecord]]]:
        """Records grouped by partition (a record's key picks it, as Kafka's Java client
        does; keyless records of one send share one partition), in batches of at most
        maxBatchBytes. A record too big for an empty batch is dropped and counted."""
        by_partition: dict[int, list[OutRecord]] = {}
        for record in records:
            by_partition.setdefault(self._partition_of(record.key), []).append(record)
        batches = []
        for partition, group in by_partition.items():
            batches += [(partition, batch, held) for batch, held in self._build(producer, group)]
        return batches

    def _partition_of(self, key: str | None) -> int:
        if key is None:
            return self._partitions[self._sticky]
        partition = self._key_partition.get(key)
        if partition is None:
            from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

            index = (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % len(self._partitions)
            partition = self._partitions[index]
            if len(self._key_partition) >= _KEY_CACHE:
                self._key_partition.clear()
            self._key_partition[key] = partition
        return partition

    def _build(self, producer: Any, records: list[OutRecord]
               ) -> list[tuple[Any, list[OutRecord]]]:
        built: list[tuple[Any, list[OutRecord]]] = []
        batch, held = producer.create_batch(), []
        for record in records:
            if record.size > self.params.maxBatchBytes:
                self._drop(1, f"a record of {record.size} bytes exceeds maxBatchBytes")
                continue
            if _append(batch, record):
                held.append(record)
                continue
            if held:
                built.append((batch, held))
                batch, held = producer.create_batch(), []
                if _append(batch, record):
                    held.append(record)
                    continue
            self._drop(1, "a record does not fit an empty batch")
        if held:
            built.append((batch, held))
        for batch, _ in built:
            batch.close()
        return built

    # -- health and logs -----------------------------------------------------------------

    def _unhealthy(self, event: str, exc: BaseException | None) -> None:
        was = self.healthy
        self.healthy = False
        self._on_health(False)
        self._warn(event, force=was, error=_describe(exc))

    def _recovered(self) -> None:
        if not self.healthy:
            self.healthy = True
            self._on_health(True)
            self.log.info("kafka: connected", handler=self.name, topic=self.params.topic)

    def _warn(self, event: str, force: bool = False, **fields: Any) -> None:
        now = time.monotonic()
        if force or now - self._last_warning >= _LOG_EVERY:
            self._last_warning = now
            self.log.warning(event, handler=self.name, **fields)


def _append(batch: Any, record: OutRecord) -> bool:
    return batch.append(key=record.key_bytes(), value=record.value,
                        timestamp=record.timestamp_ms) is not None


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
