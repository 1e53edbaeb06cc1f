"""Test doubles for the hub's injected dependencies (never for a real backend)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any


class FakeClock:
    """A clock tests move by hand (``clock.t += 5``), so quota windows need no sleeping."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> dt.datetime:
        return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=self.t)


class Log:
    """Records structlog-style calls: ``log.warning("event", key=value)``."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **kw: self.records.append((level, event, kw))

    def events(self, event: str) -> int:
        """How many times ``event`` was logged, at any level."""
        return sum(1 for _, e, _ in self.records if e == event)
