"""The client's check cache: precondition verdicts (denials too) keyed by what they read.

A verdict is kept for its ``valid_duration`` and ``valid_use_count`` (the answer that
brought it used one), in an LRU of ``max_entries`` (10,000, as Envoy's Mixer client).
Lookups hash one key per live shape (:mod:`mixerhub.proxy_filter.shapes`). Time comes from
an injected clock, so tests never sleep.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from mixerhub.proxy_filter.shapes import ShapeIndex
from mixerhub.verdict import Verdict


@dataclasses.dataclass(slots=True)
class _Entry:
    verdict: Verdict
    expires: float
    uses_left: int


class CheckCache:
    def __init__(self, max_entries: int = 10_000, max_shapes: int = 64,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._index: ShapeIndex[_Entry] = ShapeIndex(max_entries, max_shapes)

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, values: Mapping[str, Any]) -> Verdict | None:
        """A live verdict for these attribute values (one use taken), or None."""
        now = self.clock()
        for full, entry in self._index.candidates(values):
            if entry.expires <= now or entry.uses_left <= 0:
                self._index.remove(full)
                continue
            entry.uses_left -= 1
            if entry.uses_left:
                self._index.touch(full)
            else:
                self._index.remove(full)
            return entry.verdict
        return None

    def store(self, verdict: Verdict, values: Mapping[str, Any]) -> bool:
        """Keep a verdict the hub gave for ``values``; False when it may not be reused."""
        seconds = verdict.valid_duration.total_seconds()
        if seconds <= 0 or verdict.valid_use_count <= 1:
            return False
        entry = _Entry(verdict, self.clock() + seconds, verdict.valid_use_count - 1)
        return self._index.put(verdict.references, values, entry) is not None

    def flight_keys(self, values: Mapping[str, Any]) -> list[Hashable]:
        """See :meth:`ShapeIndex.flight_keys`."""
        return self._index.flight_keys(values)

    def clear(self) -> None:
        self._index.clear()
