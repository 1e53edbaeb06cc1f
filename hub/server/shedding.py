"""Load shedding for checks, backpressure for reports.

**Checks** are latency-bound: a proxy waits for each one. Past a bound the hub refuses at
once (gRPC UNAVAILABLE, HTTP 503), so the caller's own fail policy decides (Envoy's
``failure_mode_allow``, the proxy's ``--fail-open``) instead of the check waiting in a
queue until it times out. Two bounds, each optional:

* ``max_inflight``: checks being answered at the same time;
* ``max_queue_latency``: the event loop's lag, measured by a ticker that sleeps a few
  milliseconds and notes how late it wakes. That lag is how long any ready work — a new
  request included — waits before it runs: the hub's queue latency.

Every refusal is counted in ``mixerhub_shed_total``.

**Reports** must not be lost, so they are never refused: at most ``limit`` report or
access-log messages are dispatched at once and the rest wait for a slot. A waiting gRPC
handler does not read its stream further, so HTTP/2 flow control slows the sender down
instead of the hub buffering without bound.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mixerhub.metrics import Metrics


class Shedder:
    """Admits a check or says why not. One per hub, shared by every check API."""

    def __init__(self, metrics: Metrics, max_inflight: int = 0,
                 max_queue_latency: float = 0.0) -> None:
        self.max_inflight = max_inflight
        self.max_queue_latency = max_queue_latency
        self.inflight = 0
        self.lag = 0.0
        self._shed = metrics.shed
        self._gauge = metrics.inflight_checks
        self._lag_gauge = metrics.queue_latency

    @property
    def enabled(self) -> bool:
        return self.max_inflight > 0 or self.max_queue_latency > 0

    def enter(self) -> str | None:
        """Admit one check (None), or refuse it with the reason (counted). A check
        admitted must :meth:`leave`."""
        if 0 < self.max_inflight <= self.inflight:
            self._shed.inc()
            return f"hub overloaded: {self.inflight} checks in flight (limit {self.max_inflight})"
        if 0 < self.max_queue_latency < self.lag:
            self._shed.inc()
            return (f"hub overloaded: queue latency {self.lag * 1000:.0f} ms "
                    f"(limit {self.max_queue_latency * 1000:.0f} ms)")
        self.inflight += 1
        self._gauge.set(self.inflight)
        return None

    def leave(self) -> None:
        self.inflight -= 1
        self._gauge.set(self.inflight)

    async def measure_lag(self, stop: asyncio.Event) -> None:
        """Sample the loop's lag until ``stop`` is set (needed by ``max_queue_latency``)."""
        loop = asyncio.get_running_loop()
        tick = min(0.01, max(0.001, self.max_queue_latency / 4))
        while not stop.is_set():
            started = loop.time()
            await asyncio.sleep(tick)
            self.lag = max(0.0, loop.time() - started - tick)
            self._lag_gauge.set(self.lag)


class ReportGate:
    """At most ``limit`` report messages dispatched at once; the rest wait (``async with``).
    ``limit`` 0 means no bound."""

    def __init__(self, metrics: Metrics, limit: int) -> None:
        self.limit = limit
        self._slots = asyncio.Semaphore(limit) if limit > 0 else None
        self.inflight = 0
        self.waiting = 0
        self._inflight_gauge = metrics.inflight_reports
        self._waiting_gauge = metrics.waiting_reports

    async def __aenter__(self) -> None:
        if self._slots is not None:
            if self._slots.locked():
                self.waiting += 1
                self._waiting_gauge.set(self.waiting)
                try:
                    await self._slots.acquire()
                finally:
                    self.waiting -= 1
                    self._waiting_gauge.set(self.waiting)
            else:
                await self._slots.acquire()
        self.inflight += 1
        self._inflight_gauge.set(self.inflight)

    async def __aexit__(self, *exc: Any) -> None:
        self.inflight -= 1
        self._inflight_gauge.set(self.inflight)
        if self._slots is not None:
            self._slots.release()
