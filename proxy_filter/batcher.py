"""Report batching: at least once, bounded, never silent.

Records wait in a buffer of at most ``max_buffered``; a batch leaves when it holds
``max_entries`` (100) or its oldest record is ``max_delay`` (1 s) old, as one ReportRequest
in INDEPENDENT_ENCODING whose new words are shared in ``default_words``. A record leaves
the buffer only once the hub acknowledged it: a failed RPC (hub down, restarting, timing
out) is retried with exponential backoff and jitter, so a hub restart loses nothing (a
batch the hub took just before dying may arrive twice: at least once). Every record ends
counted in ``mixerhub_proxy_reports_total``: ``sent``; ``dropped`` (the buffer was full,
or the client shut down with the hub still unreachable after ``close_timeout``); or
``rejected`` (the hub refused it as malformed, or a value has no wire type).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc

from mixerhub.api.mixer.v1 import report_pb2
from mixerhub.attributes.compression import Encoder
from mixerhub.errors import EncodeError
from mixerhub.proxy_filter.metrics import ProxyMetrics

Send = Callable[[report_pb2.ReportRequest], Awaitable[None]]
#: Failures worth retrying: the hub may take the same batch later.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
                       grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                       grpc.StatusCode.CANCELLED})


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    max_entries: int = 100
    max_delay: float = 1.0
    max_buffered: int = 10_000
    retry_initial: float = 0.1
    retry_max: float = 5.0
    close_timeout: float = 5.0


class ReportBatcher:
    """Buffers report records and sends them in batches through ``send``."""

    def __init__(self, send: Send, encoder: Encoder | None = None,
                 options: BatchOptions | None = None, metrics: ProxyMetrics | None = None,
                 log: Any = None) -> None:
        self._send = send
        self.encoder = encoder or Encoder()
        self.options = options or BatchOptions()
        self.metrics = metrics or ProxyMetrics()
        self.log = log
        self._buffer: deque[tuple[float, Mapping[str, Any]]] = deque()  # (arrived, values)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set after each delivered (or given up) batch
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._due_now = False
        self._deadline: float | None = None  # closing: give up on the hub after this
        self.dropped_total = 0
        self._sent = self.metrics.reports.labels("sent")
        self._dropped = self.metrics.reports.labels("dropped")
        self._rejected = self.metrics.reports.labels("rejected")
        self.metrics.reports_buffered.set_function(lambda: len(self._buffer))

    def add(self, values: Mapping[str, Any]) -> bool:
        """Queue one record; False (counted, logged) when the buffer is full."""
        if len(self._buffer) >= self.options.max_buffered or self._closing:
            self._drop(1, "buffer full" if not self._closing else "shutting down")
            return False
        if not self._buffer or len(self._buffer) + 1 >= self.options.max_entries:
            self._wake.set()
        self._buffer.append((time.monotonic(), values))
        return True

    def _drop(self, count: int, reason: str) -> None:
        self._dropped.inc(count)
        before, self.dropped_total = self.dropped_total, self.dropped_total + count
        if self.log is not None and (before == 0 or before // 1000 != self.dropped_total // 1000):
            self.log.warning("reports dropped", count=count, reason=reason,
                             dropped_total=self.dropped_total)  # the 1st, then per 1,000

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._next_batch_ready()
            await self._deliver_one_batch()

    async def _next_batch_ready(self) -> None:
        while not self._buffer:
            self._wake.clear()
            await self._wake.wait()
        delay = self._buffer[0][0] + self.options.max_delay - time.monotonic()
        if len(self._buffer) < self.options.max_entries and delay > 0 and not self._due_now:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    async def _deliver_one_batch(self) -> None:
        count = min(len(self._buffer), self.options.max_entries)
        request, encoded = self._encode([self._buffer[i][1] for i in range(count)])
        if encoded:
            await self._send_with_retry(request, encoded)
        for _ in range(count):
            self._buffer.popleft()
        self._idle.set()

    def _encode(self, records: Sequence[Mapping[str, Any]]
                ) -> tuple[report_pb2.ReportRequest, int]:
        request = report_pb2.ReportRequest(
            global_word_count=self.encoder.global_word_count,
            repeated_attributes_semantics=report_pb2.ReportRequest.INDEPENDENT_ENCODING)
        shared: list[str] = []
        try:
            request.attributes.extend(self.encoder.encode_all(records, shared))
        except EncodeError:  # rare: find the bad records one by one, send the rest
            shared.clear()
            request.attributes.extend(self._encode_each(records, shared))
        request.default_words.extend(shared)
        return request, len(request.attributes)

    def _encode_each(self, records: Sequence[Mapping[str, Any]], shared: list[str]
                     ) -> list[Any]:
        out = []
        for values in records:
            try:
                out.append(self.encoder.encode(values, shared_words=shared))
            except EncodeError as exc:
                self._rejected.inc()
                if self.log is not None:
                    self.log.error("report record cannot be encoded", error=str(exc))
        return out

    async def _send_with_retry(self, request: report_pb2.ReportRequest, count: int) -> None:
        attempt = 0
        while True:
            try:
                await self._send(request)
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
                self.metrics.report_batches.labels("error").inc()
                if code not in RETRYABLE:
                    self._reject(count, exc)
                    return
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    self._drop(count, "shut down with the hub unreachable")
                    return
                attempt += 1
                self.metrics.report_retries.inc()
                await asyncio.sleep(self._pause(attempt))
                continue
            self.metrics.report_batches.labels("ok").inc()
            self._sent.inc(count)
            return

    def _pause(self, attempt: int) -> float:
        """Exponential backoff with jitter; never past the closing deadline."""
        o = self.options
        ceiling = min(o.retry_max, o.retry_initial * 2.0 ** min(attempt - 1, 30))
        pause = ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
        if self._deadline is not None:
            pause = min(pause, max(self._deadline - time.monotonic(), 0.0))
        return pause

    def _reject(self, count: int, exc: grpc.RpcError) -> None:
        self._rejected.inc(count)
        if self.log is not None:
            self.log.error("hub rejected a report batch", records=count,
                           error=getattr(exc, "details", lambda: str(exc))())

    async def flush(self) -> None:
        """Send everything buffered without waiting for ``max_delay`` (tests, shutdown);
        returns when the buffer is empty (closing: or the deadline gave up on it)."""
        self._due_now = True
        try:
            while self._buffer and self._task is not None and not self._task.done():
                self._idle.clear()
                self._wake.set()
                await self._idle.wait()
        finally:
            self._due_now = self._closing

    async def close(self) -> None:
        """Flush with the hub's last chance (``close_timeout``), then stop."""
        self._closing = True
        self._deadline = time.monotonic() + self.options.close_timeout
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._buffer:
            self._drop(len(self._buffer), "shut down")
            self._buffer.clear()
