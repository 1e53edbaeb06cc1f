"""Quota prefetch: ask the hub for units ahead of demand, hand them out locally.

Mixer's client idea, made strict. Per quota and per key (the attributes the hub's grant
referenced: the quota's dimensions and its rule's match) a :class:`TokenPool` holds units
the hub already granted. A request takes units from the pool; when the pool runs low a
background fetch asks for the units the last ``window`` used (at least ``min_amount``);
when it is empty the request waits for a fetch. Fetches are best-effort (the hub grants
what is left) and carry a ``deduplication_id``.

Guarantee: a unit handed to a request is a unit the hub granted, and it is used only
within the grant's ``valid_duration`` (the quota's window), so requests are never granted
more than the hub's limit; what prefetch costs is units fetched and never used (counted as
``mixerhub_proxy_quota_expired_units``). After the hub says "exhausted" (or grants less
than asked), the pool denies locally for ``exhausted_wait`` before asking again.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any

from mixerhub.proxy_filter.flights import Flights, wait
from mixerhub.proxy_filter.metrics import ProxyMetrics
from mixerhub.proxy_filter.shapes import ShapeIndex
from mixerhub.verdict import QuotaGrant

RESOURCE_EXHAUSTED = 8
#: (values, quota name, amount) → the hub's grant; raises when the hub cannot answer.
Fetch = Callable[[Mapping[str, Any], str, int], Awaitable[QuotaGrant]]
_ROUNDS = 4


@dataclasses.dataclass(frozen=True)
class PrefetchOptions:
    window: float = 1.0  # s of demand a fetch covers; also the life of units granted for 0 s
    min_amount: int = 10  # never fetch fewer units
    max_amount: int = 10_000  # never fetch more units (bounds what a fetch can waste)
    exhausted_wait: float = 0.5  # s of local denials after the hub said exhausted
    max_pools: int = 10_000  # pools kept per quota name (LRU)


@dataclasses.dataclass(slots=True)
class _Lot:
    expires: float
    units: int


@dataclasses.dataclass(frozen=True, slots=True)
class QuotaOutcome:
    ok: bool
    code: int = 0
    message: str = ""
    prefetched: bool = False  # served from units already held, no wait on the hub


class TokenPool:
    """Units granted by the hub for one quota key, each lot with its expiry. Pure logic:
    time is passed in."""

    def __init__(self, options: PrefetchOptions,
                 on_expired: Callable[[int], None] = lambda n: None) -> None:
        self.options = options
        self.on_expired = on_expired
        self._lots: list[_Lot] = []  # soonest expiry first
        self._tokens = 0
        self._used: deque[tuple[float, int]] = deque()
        self._used_sum = 0
        self.closed_until = 0.0
        self.code, self.message = 0, ""
        self.fetching: asyncio.Future[None] | None = None

    def available(self, now: float) -> int:
        while self._lots and self._lots[0].expires <= now:
            lot = self._lots.pop(0)
            self._tokens -= lot.units
            self.on_expired(lot.units)
        return self._tokens

    def take(self, amount: int, now: float) -> bool:
        if self.available(now) < amount:
            return False
        left = amount
        while left:
            lot = self._lots[0]
            used = min(left, lot.units)
            lot.units -= used
            left -= used
            if not lot.units:
                self._lots.pop(0)
        self._tokens -= amount
        self._record_use(amount, now)
        return True

    def _record_use(self, amount: int, now: float) -> None:
        self._used.append((now, amount))
        self._used_sum += amount
        while self._used and self._used[0][0] <= now - self.options.window:
            self._used_sum -= self._used.popleft()[1]

    def put(self, units: int, expires: float) -> None:
        if units > 0:
            bisect.insort(self._lots, _Lot(expires, units), key=lambda lot: lot.expires)
            self._tokens += units

    def want(self, amount: int) -> int:
        """Units to fetch: the last window's use, at least ``min_amount`` and ``amount``."""
        o = self.options
        return max(min(max(self._used_sum, o.min_amount), o.max_amount), amount)

    def low(self, now: float) -> bool:
        """Worth a background fetch: under half of a window's demand left, none running."""
        return (self.fetching is None and not self.closed(now)
                and 2 * self.available(now) < self.want(1))

    def close(self, until: float, code: int, message: str) -> None:
        self.closed_until, self.code, self.message = until, code, message

    def closed(self, now: float) -> bool:
        return now < self.closed_until


class QuotaPrefetcher:
    """Hands out quota units from pools, fetching from the hub through ``fetch``."""

    def __init__(self, fetch: Fetch, options: PrefetchOptions | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 metrics: ProxyMetrics | None = None, log: Any = None) -> None:
        self._fetch = fetch
        self.options = options or PrefetchOptions()
        self.clock = clock
        self.metrics = metrics or ProxyMetrics()
        self.log = log
        self._pools: dict[str, ShapeIndex[TokenPool]] = {}
        self._flights = Flights()
        self._tasks: set[asyncio.Task[None]] = set()
        self._units = {r: self.metrics.quota_units.labels(r)
                       for r in ("prefetched", "fetched", "exhausted")}

    async def acquire(self, name: str, amount: int, values: Mapping[str, Any]) -> QuotaOutcome:
        """Take ``amount`` units of quota ``name`` for a request with these values. Raises
        what ``fetch`` raises when the hub cannot answer (the caller's fail policy)."""
        for round_ in range(_ROUNDS):
            pool = self._find(name, values)
            if pool is None:
                pool = await self._first_fetch(name, values, amount)
                if pool is None:
                    continue  # another request's fetch finished: look again
            now = self.clock()
            if pool.take(amount, now):
                self._units["prefetched" if round_ == 0 else "fetched"].inc(amount)
                self._maybe_refill(pool, name, values, now)
                return QuotaOutcome(True, prefetched=round_ == 0)
            if pool.closed(now):
                return self._exhausted(amount, pool.code, pool.message)
            if pool.fetching is not None:
                await wait(pool.fetching)
            else:
                await self._refill(pool, name, values, amount)
        return self._exhausted(amount, RESOURCE_EXHAUSTED, f"quota {name}: no units left")

    def _exhausted(self, amount: int, code: int, message: str) -> QuotaOutcome:
        self._units["exhausted"].inc(amount)
        return QuotaOutcome(False, code or RESOURCE_EXHAUSTED, message)

    def _find(self, name: str, values: Mapping[str, Any]) -> TokenPool | None:
        index = self._pools.get(name)
        if index is None:
            return None
        for full, pool in index.candidates(values):
            index.touch(full)
            return pool
        return None

    def _flight_keys(self, name: str, values: Mapping[str, Any]) -> list[Hashable]:
        index = self._pools.get(name)
        keys = index.flight_keys(values) if index is not None else [()]
        return [(name, k) for k in keys]

    async def _first_fetch(self, name: str, values: Mapping[str, Any], amount: int
                           ) -> TokenPool | None:
        """A pool for a key not seen yet; None after waiting on someone else's fetch."""
        keys = self._flight_keys(name, values)
        pending = self._flights.find(keys)
        if pending is not None:
            await wait(pending)
            return None
        pool = TokenPool(self.options, self.metrics.quota_expired_units.inc)
        with self._flights.flying(keys):
            grant = await self._absorb_fetch(pool, name, values, pool.want(amount))
            index = self._pools.setdefault(name, ShapeIndex(self.options.max_pools))
            index.put(grant.references, values, pool)  # a pool it cannot key serves just us
        return pool

    async def _refill(self, pool: TokenPool, name: str, values: Mapping[str, Any],
                      amount: int, future: asyncio.Future[None] | None = None) -> None:
        if future is None:
            future = pool.fetching = asyncio.get_running_loop().create_future()
        try:
            await self._absorb_fetch(pool, name, values, pool.want(amount))
        finally:
            _settle(pool, future)

    async def _absorb_fetch(self, pool: TokenPool, name: str, values: Mapping[str, Any],
                            asked: int) -> QuotaGrant:
        try:
            grant = await self._fetch(values, name, asked)
        except Exception:
            self.metrics.quota_fetches.labels("error").inc()
            raise
        now = self.clock()
        granted = max(grant.granted_amount, 0)
        life = grant.valid_duration.total_seconds()
        pool.put(granted, now + (life if life > 0 else self.options.window))
        self.metrics.quota_fetched_units.inc(granted)
        if grant.code or granted < asked:
            message = grant.message or f"quota is exhausted for: {name}"
            pool.close(now + self.options.exhausted_wait, grant.code or RESOURCE_EXHAUSTED,
                       message)
        self.metrics.quota_fetches.labels(_fetch_result(grant, granted, asked)).inc()
        return grant

    def _maybe_refill(self, pool: TokenPool, name: str, values: Mapping[str, Any],
                      now: float) -> None:
        if not pool.low(now):
            return
        loop = asyncio.get_running_loop()
        future = pool.fetching = loop.create_future()  # at once: one refill per pool
        task = loop.create_task(self._background_refill(pool, name, dict(values), future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: _settle(pool, future))  # even if cancelled unstarted

    async def _background_refill(self, pool: TokenPool, name: str,
                                 values: Mapping[str, Any], future: asyncio.Future[None]
                                 ) -> None:
        try:
            await self._refill(pool, name, values, 1, future)
        except Exception as exc:  # noqa: BLE001 - counted in _absorb_fetch; a request will retry
            if self.log is not None:
                self.log.info("quota prefetch failed", quota=name,
                              error=str(exc) or type(exc).__name__)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _fetch_result(grant: QuotaGrant, granted: int, asked: int) -> str:
    if grant.code and grant.code != RESOURCE_EXHAUSTED and not granted:
        return "error"
    if granted >= asked:
        return "granted"
    return "partial" if granted else "exhausted"


def _settle(pool: TokenPool, future: asyncio.Future[None]) -> None:
    """End a refill: waiters wake and look at the pool again."""
    if pool.fetching is future:
        pool.fetching = None
    if not future.done():
        future.set_result(None)
