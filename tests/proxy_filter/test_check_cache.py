"""The client's check cache: keyed by referenced-attribute shapes, honouring duration and use
count, denials included, bounded. Time is a fake clock; nothing sleeps."""

from __future__ import annotations

import datetime as dt

from mixerhub.attributes.bag import Reference
from mixerhub.proxy_filter.check_cache import CheckCache
from mixerhub.proxy_filter.shapes import ShapeIndex, key_of, shape_of
from mixerhub.verdict import Verdict
from tests.fakes import FakeClock

PATH = Reference("request.path", None, True)
USER = Reference("request.headers", "x-user", True)
NO_USER = Reference("request.headers", "x-user", False)


def verdict(*refs: Reference, code: int = 0, seconds: float = 60, uses: int = 100) -> Verdict:
    return Verdict(code=code, valid_duration=dt.timedelta(seconds=seconds),
                   valid_use_count=uses, references=refs)


def request(path: str = "/a", user: str | None = None, **more: object) -> dict:
    headers = {"x-request-id": str(more.pop("rid", "1"))}
    if user is not None:
        headers["x-user"] = user
    return {"request.path": path, "request.headers": headers, **more}


def test_hit_needs_equal_values_of_exactly_the_referenced_attributes() -> None:
    cache = CheckCache(clock=FakeClock().monotonic)
    allow = verdict(PATH, USER)
    assert cache.store(allow, request("/a", "alice"))
    # other request ids, other unreferenced attributes: still a hit
    assert cache.lookup(request("/a", "alice", rid=2, **{"source.port": 5})) is allow
    assert cache.lookup(request("/a", "bob")) is None
    assert cache.lookup(request("/b", "alice")) is None
    assert cache.lookup(request("/a")) is None  # x-user absent: a different shape


def test_absence_is_part_of_the_key() -> None:
    cache = CheckCache(clock=FakeClock().monotonic)
    anonymous = verdict(PATH, NO_USER, code=16)
    cache.store(anonymous, request("/a"))
    assert cache.lookup(request("/a", rid=9)) is anonymous
    assert cache.lookup(request("/a", "alice")) is None
    assert cache.lookup({"request.path": "/a"}) is anonymous  # no map: no key either


def test_denials_are_cached() -> None:
    cache = CheckCache(clock=FakeClock().monotonic)
    deny = verdict(PATH, code=7)
    cache.store(deny, request("/admin"))
    assert cache.lookup(request("/admin", "x")) is deny


def test_use_count_counts_the_answer_that_brought_the_verdict() -> None:
    cache = CheckCache(clock=FakeClock().monotonic)
    cache.store(verdict(PATH, uses=3), request())
    assert cache.lookup(request()) is not None  # 2nd use
    assert cache.lookup(request()) is not None  # 3rd use
    assert cache.lookup(request()) is None
    assert len(cache) == 0
    assert not cache.store(verdict(PATH, uses=1), request())  # nothing left to reuse


def test_duration_expires_entries() -> None:
    clock = FakeClock()
    cache = CheckCache(clock=clock.monotonic)
    cache.store(verdict(PATH, seconds=5), request())
    clock.t += 4.9
    assert cache.lookup(request()) is not None
    clock.t += 0.2
    assert cache.lookup(request()) is None
    assert not cache.store(verdict(PATH, seconds=0), request())


def test_bounded_lru() -> None:
    cache = CheckCache(max_entries=3, clock=FakeClock().monotonic)
    for path in ("/1", "/2", "/3"):
        cache.store(verdict(PATH), request(path))
    cache.lookup(request("/1"))  # /2 is now the least recently used
    cache.store(verdict(PATH), request("/4"))
    assert len(cache) == 3
    assert cache.lookup(request("/2")) is None
    assert all(cache.lookup(request(p)) for p in ("/1", "/3", "/4"))


def test_default_bound_is_ten_thousand() -> None:
    cache = CheckCache(clock=FakeClock().monotonic)
    for i in range(10_050):
        cache.store(verdict(PATH), request(f"/{i}"))
    assert len(cache) == 10_000


def test_lookup_cost_does_not_grow_with_entries(monkeypatch) -> None:
    """One key per live shape: 10,000 entries of one shape → one key computed per lookup
    (bench/proxy.py measures the time against a linear scan)."""
    import mixerhub.proxy_filter.shapes as shapes

    index: ShapeIndex[int] = ShapeIndex()
    for i in range(10_000):
        index.put([PATH], {"request.path": f"/{i}"}, i)
    computed = []

    def counting(shape, values):
        computed.append(shape)
        return key_of(shape, values)

    monkeypatch.setattr(shapes, "key_of", counting)
    assert [item for _, item in index.candidates({"request.path": "/9999"})] == [9999]
    assert len(computed) == 1


def test_shapes_are_dropped_with_their_last_entry_and_bounded() -> None:
    index: ShapeIndex[str] = ShapeIndex(max_shapes=2)
    index.put([PATH], {"request.path": "/a"}, "a")
    index.put([USER], request(user="u"), "u")
    index.put([PATH, USER], request(user="u"), "pu")  # a third shape evicts the oldest
    assert [i for _, i in index.candidates(request("/a", "u"))] == ["u", "pu"]
    full = next(f for f, i in index.items() if i == "u")
    index.remove(full)
    assert index.flight_keys(request("/a", "u")) != [()]
    assert shape_of([USER, PATH, USER]) == shape_of([PATH, USER])


def test_string_maps_key_by_content() -> None:
    labels = Reference("source.labels", None, True)
    cache = CheckCache(clock=FakeClock().monotonic)
    cache.store(verdict(labels), {"source.labels": {"app": "a", "v": "1"}})
    assert cache.lookup({"source.labels": {"v": "1", "app": "a"}}) is not None
    assert cache.lookup({"source.labels": {"app": "a"}}) is None
