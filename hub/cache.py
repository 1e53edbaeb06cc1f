"""The hub's decision cache: verdicts keyed by exactly the attributes they read.

A verdict's references form a *shape*: which names and map keys were read, and whether each
was present. For a request, each known shape yields a key (the request's values for those
names); an entry stored under that key is a valid answer, because evaluation is
deterministic in what it reads. Entries honour the verdict's valid_duration and
valid_use_count; the LRU is bounded. One cache per snapshot: a reload starts empty.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from mixerhub.attributes.bag import MISSING
from mixerhub.verdict import Verdict

Shape = tuple[tuple[str, str | None, bool], ...]


@dataclasses.dataclass(slots=True)
class _Entry:
    verdict: Verdict
    expires: float
    uses_left: int


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return frozenset(value.items())
    return value


def _key(shape: Shape, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The request's values for a shape, or None when presence differs."""
    out = []
    for name, map_key, present in shape:
        value = values.get(name, MISSING)
        if map_key is not None and value is not MISSING:
            value = value.get(map_key, MISSING) if isinstance(value, dict) else MISSING
        if (value is not MISSING) != present:
            return None
        out.append(_hashable(value))
    return tuple(out)


class DecisionCache:
    def __init__(self, max_entries: int = 10_000, max_shapes: int = 64,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_shapes = max_shapes
        self.clock = clock
        self._entries: OrderedDict[tuple[Shape, tuple[Any, ...]], _Entry] = OrderedDict()
        self._shapes: dict[Shape, None] = {}  # insertion-ordered set

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, values: Mapping[str, Any]) -> Verdict | None:
        """A cached verdict with its remaining lifetime, or None."""
        now = self.clock()
        for shape in self._shapes:
            key = _key(shape, values)
            if key is None:
                continue
            entry = self._entries.get((shape, key))
            if entry is None:
                continue
            if entry.expires <= now or entry.uses_left <= 0:
                del self._entries[(shape, key)]
                continue
            entry.uses_left -= 1
            self._entries.move_to_end((shape, key))
            v = entry.verdict  # built directly: dataclasses.replace costs ~10 µs here
            return Verdict(v.code, v.message, dt.timedelta(seconds=entry.expires - now),
                           entry.uses_left + 1, v.references, v.request_header_ops,
                           v.response_header_ops, v.direct_response_code,
                           v.direct_response_body, v.rules)
        return None

    def store(self, verdict: Verdict, values: Mapping[str, Any]) -> None:
        """Remember a verdict reached on ``values``, keyed by what it referenced. The answer
        already given used one of its uses."""
        if verdict.valid_duration <= dt.timedelta(0) or verdict.valid_use_count <= 1:
            return
        shape: Shape = tuple(sorted((r.name, r.map_key or "", r.present)
                                    for r in verdict.references))
        shape = tuple((n, k or None, p) for n, k, p in shape)
        key = _key(shape, values)
        if key is None:  # the bag changed under us; never store a wrong key
            return
        if shape not in self._shapes:
            if len(self._shapes) >= self.max_shapes:
                self._shapes.pop(next(iter(self._shapes)))
            self._shapes[shape] = None
        full = (shape, key)
        self._entries[full] = _Entry(verdict, self.clock() + verdict.valid_duration.total_seconds(),
                                     verdict.valid_use_count - 1)
        self._entries.move_to_end(full)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

