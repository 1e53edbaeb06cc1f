"""Hub calls in flight, so identical requests arriving together make one call, not many."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterable, Iterator


class Flights:
    """A call registers under keys; a later caller sharing a key awaits it, then looks
    again in its cache. A waiter whose answer turned out to be keyed differently makes its
    own call, so the worst case is one extra round trip, never a wrong answer."""

    def __init__(self) -> None:
        self._pending: dict[Hashable, asyncio.Future[None]] = {}

    def find(self, keys: Iterable[Hashable]) -> asyncio.Future[None] | None:
        for key in keys:
            future = self._pending.get(key)
            if future is not None:
                return future
        return None

    @contextlib.contextmanager
    def flying(self, keys: list[Hashable]) -> Iterator[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._pending.setdefault(key, future)
        try:
            yield
        finally:
            for key in keys:
                if self._pending.get(key) is future:
                    del self._pending[key]
            future.set_result(None)


async def wait(future: asyncio.Future[None]) -> None:
    """Wait for another caller's flight; being cancelled here does not cancel it."""
    await asyncio.shield(future)
