"""envoyproxy/ratelimit's descriptor YAML loads unchanged and limits as it does there."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixerhub.config.errors import ConfigErrors
from mixerhub.config.loader import load_config
from mixerhub.plugins import load_plugins
from mixerhub.ratelimit.config import Domain
from mixerhub.ratelimit.limiter import Limiter, MemoryCounters

DATA = Path(__file__).parents[1] / "data" / "ratelimit"


def domains(*names: str) -> dict[str, Domain]:
    return dict(load_config([DATA / n for n in names], load_plugins()).ratelimit_domains)


def test_the_good_files_load_unchanged_together() -> None:
    loaded = domains("test_config_basic_config.yaml", "examples_ratelimit_config_config.yaml",
                     "examples_ratelimit_config_example.yaml")
    assert sorted(loaded) == ["mongo_cps", "rl", "test-domain"]


@pytest.mark.parametrize(("name", "line", "message"), [
    ("test_config_duplicate_key.yaml", 6,
     "ratelimit domain 'test-domain': duplicate descriptor composite key "
     "'test-domain.key1_value1'"),
    ("test_config_misspelled_key.yaml", 5,
     "ratelimit domain 'test-domain': config error, unknown key 'ratelimit'"),
])
def test_broken_files_name_file_line_and_reason(name: str, line: int, message: str) -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_config([DATA / name], load_plugins())
    assert caught.value.errors == [f"{DATA / name}:{line}: {message}"]


@pytest.mark.parametrize(("text", "message"), [
    ("domain: d\ndescriptors:\n- key: k\n  rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
     "invalid rate limit unit 'fortnight'"),
    ("domain: d\ndescriptors:\n- key: k\n  rate_limit: {unlimited: true, unit: second}\n",
     "should not specify rate limit unit when unlimited"),
    ("domain: d\ndescriptors:\n- key: k\n  rate_limit: {unit: second, requests_per_unit: -1}\n",
     "requests_per_unit must be a non-negative integer"),
    ("domain: d\ndescriptors:\n- value: v\n", "descriptor has empty key"),
    ("domain: d\nextra: 1\n", "unknown key 'extra'"),
])
def test_other_mistakes_are_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rl.yaml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as caught:
        load_config([path], load_plugins())
    assert message in caught.value.errors[0]
    assert caught.value.errors[0].startswith(f"{path}:")


def test_same_domain_twice_is_an_error(tmp_path: Path) -> None:
    for n in (1, 2):
        (tmp_path / f"{n}.yaml").write_text("domain: twice\ndescriptors: []\n")
    with pytest.raises(ConfigErrors, match="duplicate domain"):
        load_config([tmp_path], load_plugins())


def limit_of(domain: Domain, *entries: tuple[str, str]) -> tuple[int, str] | str | None:
    found = domain.find(list(entries))
    if found is None:
        return None
    return "unlimited" if found.unlimited else (found.requests_per_unit, found.unit)


def test_lookup_prefers_key_value_then_key() -> None:
    d = domains("test_config_basic_config.yaml")["test-domain"]
    assert limit_of(d, ("key1", "value1"), ("subkey1", "other")) == (5, "second")
    assert limit_of(d, ("key1", "value1"), ("subkey1", "subvalue1")) == (10, "second")
    assert limit_of(d, ("key1", "value1")) is None  # no limit at that level
    assert limit_of(d, ("key1", "other"), ("subkey1", "x")) is None
    assert limit_of(d, ("key2", "anything")) == (20, "minute")
    assert limit_of(d, ("key2", "value2")) == (30, "minute")
    assert limit_of(d, ("key2", "value3")) is None  # a value listed without a limit
    assert limit_of(d, ("key4", "x")) == (1, "day")
    assert limit_of(d, ("key5", "value5"), ("subkey5", "subvalue5")) == (25, "day")
    assert limit_of(d, ("key6", "x")) == "unlimited"
    assert limit_of(d, ("key7", "x")) == (70, "minute")
    assert limit_of(d, ("nokey", "x")) is None


def test_value_wildcards_match_by_prefix(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(
        "domain: w\ndescriptors:\n- key: path\n  value: /api/*\n"
        "  rate_limit: {unit: second, requests_per_unit: 7}\n"
        "- key: path\n  value: /api/special\n"
        "  rate_limit: {unit: second, requests_per_unit: 1}\n")
    d = load_config([tmp_path], load_plugins()).ratelimit_domains["w"]
    assert limit_of(d, ("path", "/api/x")) == (7, "second")
    assert limit_of(d, ("path", "/api/special")) == (1, "second")  # exact wins
    assert limit_of(d, ("path", "/other")) is None


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_fixed_windows_per_value_with_reset_and_remaining() -> None:
    d = domains("test_config_basic_config.yaml")["test-domain"]
    clock = Clock(1_000_000.25)
    limiter = Limiter(MemoryCounters(), clock)
    key = [("key1", "value1"), ("subkey1", "a")]
    results = [(await limiter.decide(d, [key], [1]))[0] for _ in range(6)]
    assert [r.over for r in results] == [False] * 5 + [True]
    assert [r.remaining for r in results] == [4, 3, 2, 1, 0, 0]
    assert results[0].reset_seconds == pytest.approx(0.75)
    other = (await limiter.decide(d, [[("key1", "value1"), ("subkey1", "b")]], [1]))[0]
    assert not other.over  # each value of a key-only descriptor has its own counter
    clock.now += 1.0  # the next window
    assert not (await limiter.decide(d, [key], [1]))[0].over


async def test_hits_addend_counts_that_many() -> None:
    d = domains("test_config_basic_config.yaml")["test-domain"]
    limiter = Limiter(MemoryCounters(), Clock())
    first = (await limiter.decide(d, [[("key2", "value2")]], [29]))[0]
    assert (first.over, first.remaining) == (False, 1)
    second = (await limiter.decide(d, [[("key2", "value2")]], [2]))[0]
    assert second.over


async def test_replaces_shadow_mode_and_unlimited() -> None:
    d = domains("examples_ratelimit_config_example.yaml")["rl"]
    limiter = Limiter(MemoryCounters(), Clock())
    # category=account (4/min) replaces the limit named bkthomps (foo/bar=bkthomps, 1/min)
    both = [[("category", "account")], [("foo", "x"), ("bar", "bkthomps")]]
    for _ in range(3):
        outcomes = await limiter.decide(d, both, [1, 1])
        assert not any(o.over for o in outcomes)
        assert outcomes[1].limit is None  # replaced: not applied, not reported
    alone = [[("foo", "x"), ("bar", "bkthomps")]]
    assert [(await limiter.decide(d, alone, [1]))[0].over for _ in range(2)] == [False, True]
    shady = [[("foo", "x"), ("baz", "shady")]]
    assert not any([(await limiter.decide(d, shady, [1]))[0].over for _ in range(5)])
    free = [[("qux", "anything")]]
    assert not any([(await limiter.decide(d, free, [1]))[0].over for _ in range(50)])
    banned = (await limiter.decide(d, [[("foo", "x"), ("bar", "banned")]], [1]))[0]
    assert banned.over  # requests_per_unit: 0
