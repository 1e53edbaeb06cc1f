"""The decision cache: keyed by referenced values, honouring lifetime and use count."""

from __future__ import annotations

import datetime as dt

from mixerhub.attributes.bag import Reference
from mixerhub.cache import DecisionCache
from mixerhub.verdict import Verdict


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def verdict(refs: list[Reference], code: int = 0, seconds: float = 10, uses: int = 100) -> Verdict:
    return Verdict(code, "", dt.timedelta(seconds=seconds), uses, tuple(refs))


USER = [Reference("request.headers", "x-user", True), Reference("source.uid", None, False)]


def test_hit_needs_the_same_referenced_values_and_presence() -> None:
    cache = DecisionCache(clock=Clock())
    cache.store(verdict(USER, code=7), {"request.headers": {"x-user": "bob", "x-id": "1"}})
    assert cache.lookup({"request.headers": {"x-user": "bob", "x-id": "2"}}).code == 7
    assert cache.lookup({"request.headers": {"x-user": "alice"}}) is None
    assert cache.lookup({"request.headers": {"x-user": "bob"}, "source.uid": "u"}) is None
    assert cache.lookup({}) is None


def test_lifetime_and_use_count_are_honoured() -> None:
    clock = Clock()
    cache = DecisionCache(clock=clock)
    cache.store(verdict([], seconds=10, uses=3), {})
    first = cache.lookup({})
    assert first.valid_use_count == 2 and first.valid_duration == dt.timedelta(seconds=10)
    assert cache.lookup({}) is not None
    assert cache.lookup({}) is None  # the answer that stored it used the first of 3 uses
    cache.store(verdict([], seconds=10, uses=100), {})
    clock.t += 9.5
    assert cache.lookup({}).valid_duration == dt.timedelta(seconds=0.5)
    clock.t += 1
    assert cache.lookup({}) is None


def test_uncacheable_verdicts_are_not_stored() -> None:
    cache = DecisionCache(clock=Clock())
    cache.store(verdict([], seconds=0), {})
    cache.store(verdict([], uses=1), {})
    assert len(cache) == 0


def test_bounded_lru() -> None:
    cache = DecisionCache(max_entries=2, clock=Clock())
    refs = [Reference("source.uid", None, True)]
    for uid in ("a", "b", "c"):
        cache.store(verdict(refs), {"source.uid": uid})
    assert len(cache) == 2
    assert cache.lookup({"source.uid": "a"}) is None
    assert cache.lookup({"source.uid": "c"}) is not None


def test_several_shapes_coexist() -> None:
    cache = DecisionCache(clock=Clock())
    cache.store(verdict([Reference("source.uid", None, True)], code=7), {"source.uid": "a"})
    cache.store(verdict([Reference("request.path", None, True)], code=5), {"request.path": "/x"})
    assert cache.lookup({"request.path": "/x"}).code == 5
    assert cache.lookup({"source.uid": "a", "request.path": "/y"}).code == 7
