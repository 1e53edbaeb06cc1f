"""Fixed-window counters for the descriptor limits, in memory or in Redis.

A counter's key is the domain and the request's own entries (``domain_k1_v1_k2_v2``) and
the window it falls in (``now // unit``), as envoyproxy/ratelimit counts, so a key-only
descriptor (``key: remote_address``) limits each value separately. Every hub replica that
uses the same Redis shares the counts.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from mixerhub.errors import BackendUnavailable
from mixerhub.ratelimit.config import Domain, RateLimit


class Counters(Protocol):
    async def add(self, key: str, hits: int, window: int, now: float) -> int:
        """Add ``hits`` to ``key``'s count in the window holding ``now``; the new count."""
        ...

    async def close(self) -> None:
        ...


class MemoryCounters:
    """One process's counters; windows that ended are dropped as new ones start."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int, int]] = {}  # key → (index, count, window)

    async def add(self, key: str, hits: int, window: int, now: float) -> int:
        index = int(now // window)
        held = self._counts.get(key)
        count = (held[1] if held is not None and held[0] == index else 0) + hits
        self._counts[key] = (index, count, window)
        if len(self._counts) > 100_000:
            self._expire(now)
        return count

    def _expire(self, now: float) -> None:
        """Forget counters whose window has ended."""
        self._counts = {k: v for k, v in self._counts.items() if (v[0] + 1) * v[2] > now}

    async def close(self) -> None:
        return None


class RedisCounters:
    """INCRBY and EXPIRE in one round trip (a MULTI pipeline) per counter."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis  # only needed with a Redis backend

        self._client: Any = redis.Redis.from_url(url, socket_timeout=2.0,
                                                  socket_connect_timeout=2.0)

    async def add(self, key: str, hits: int, window: int, now: float) -> int:
        name = f"mixerhub:rl:{key}_{int(now // window)}"
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.incrby(name, hits)
                pipe.expire(name, window)
                count, _ = await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - any Redis failure is the same to callers
            raise BackendUnavailable(f"rate-limit counters in Redis failed: {exc}") from None
        return int(count)

    async def close(self) -> None:
        await self._client.aclose()


def counters_for(backend: str) -> Counters:
    """``memory`` or a ``redis://``/``rediss://`` URL."""
    if backend in ("", "memory"):
        return MemoryCounters()
    if backend.startswith(("redis://", "rediss://", "unix://")):
        return RedisCounters(backend)
    raise ValueError(f"rate-limit backend must be 'memory' or a redis:// URL, not {backend!r}")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One descriptor's answer."""

    over: bool
    limit: RateLimit | None = None
    remaining: int = 0
    reset_seconds: float = 0.0


class Limiter:
    """Applies a domain's limits to a request's descriptors."""

    def __init__(self, counters: Counters, clock: Callable[[], float] = time.time) -> None:
        self.counters = counters
        self.clock = clock

    async def decide(self, domain: Domain, descriptors: Sequence[Sequence[tuple[str, str]]],
                     hits: Sequence[int], overrides: Sequence[RateLimit | None] = ()
                     ) -> list[Outcome]:
        limits = [(overrides[i] if i < len(overrides) and overrides[i] else None)
                  or domain.find(d) for i, d in enumerate(descriptors)]
        replaced = {name for lim in limits if lim is not None for name in lim.replaces}
        now = self.clock()
        out = []
        for entries, limit, n in zip(descriptors, limits, hits):
            if limit is None or limit.unlimited or (limit.name and limit.name in replaced):
                out.append(Outcome(False, limit if limit and limit.unlimited else None))
                continue
            key = f"{domain.name}{''.join(f'_{k}_{v}' for k, v in entries)}:{limit.seconds}"
            count = await self.counters.add(key, n, limit.seconds, now)
            reset = limit.seconds - math.fmod(now, limit.seconds)
            over = count > limit.requests_per_unit and not limit.shadow
            out.append(Outcome(over, limit, max(limit.requests_per_unit - count, 0), reset))
        return out
