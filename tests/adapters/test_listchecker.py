"""The listchecker adapter: every entry type, white and black lists, and a real HTTP provider
(an aiohttp server on an ephemeral port) that changes, fails and goes away."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from mixerhub.adapter import AdapterEnv, BackendError, Status
from mixerhub.adapters import listchecker
from mixerhub.adapters.listchecker import ListCheckerAdapter, ListParams, parse_body
from mixerhub.plugins import load_plugins
from mixerhub.templates.instance import Instance
from tests.fakes import FakeClock, Log

OK, INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED = 0, 3, 5, 7


class Harness:
    """An injected clock, logger and error counter, and the adapters to stop at the end."""

    def __init__(self) -> None:
        self.clock, self.log, self.errors = FakeClock(), Log(), 0
        self.started: list[ListCheckerAdapter] = []

    def env(self) -> AdapterEnv:
        return AdapterEnv(handler="list.istio-system", registry=CollectorRegistry(),
                          logger=self.log, clock=self.clock, on_error=self._count)

    def _count(self) -> None:
        self.errors += 1

    def adapter(self, **params: Any) -> ListCheckerAdapter:
        return ListCheckerAdapter(ListParams.model_validate(params), self.env())

    async def start(self, provider: Provider, **params: Any) -> ListCheckerAdapter:
        """An adapter polling ``provider`` every 50 ms (ttl 60 s unless given)."""
        adapter = self.adapter(**{"providerUrl": provider.url, "refreshInterval": 0.05,
                                  "ttl": "60s", **params})
        self.started.append(adapter)
        await adapter.start()
        return adapter

    async def close(self) -> None:
        for adapter in self.started:
            await adapter.stop()


def entry(value: Any) -> Instance:
    return Instance("source.instance.istio-system", "listentry", {"value": value})


async def verdict(adapter: ListCheckerAdapter, value: Any) -> tuple[int, str]:
    result = await adapter.check(entry(value))
    return result.code, result.message


# ---- lists from overrides -------------------------------------------------------------

async def test_whitelist_allows_listed_and_reports_unlisted_as_not_found() -> None:
    adapter = Harness().adapter(overrides=["v1", "v2"])
    await adapter.start()
    assert adapter.status is Status.OK
    assert await verdict(adapter, "v1") == (OK, "")
    assert await verdict(adapter, "v3") == (NOT_FOUND, "v3 is not whitelisted")


async def test_blacklist_denies_listed_and_allows_unlisted() -> None:
    adapter = Harness().adapter(overrides=["mallory"], blacklist=True)
    assert await verdict(adapter, "mallory") == (PERMISSION_DENIED, "mallory is blacklisted")
    assert await verdict(adapter, "alice") == (OK, "")


async def test_verdicts_carry_the_caching_lifetime() -> None:
    adapter = Harness().adapter(overrides=["a"], cachingInterval="7s", cachingUseCount=42)
    for value in ("a", "b"):
        result = await adapter.check(entry(value))
        assert (result.valid_duration, result.valid_use_count) == (dt.timedelta(seconds=7), 42)


async def test_default_lifetime_is_300s_and_10000_uses() -> None:
    result = await Harness().adapter(overrides=["a"]).check(entry("a"))
    assert (result.valid_duration, result.valid_use_count) == (dt.timedelta(seconds=300), 10_000)


async def test_strings_are_case_sensitive() -> None:
    adapter = Harness().adapter(overrides=["Alice"])
    assert (await verdict(adapter, "alice"))[0] == NOT_FOUND
    assert (await verdict(adapter, "Alice"))[0] == OK


async def test_case_insensitive_strings() -> None:
    adapter = Harness().adapter(overrides=["Alice", "STRASSE"],
                                entryType="CASE_INSENSITIVE_STRINGS")
    assert (await verdict(adapter, "aLICE"))[0] == OK
    assert (await verdict(adapter, "straße"))[0] == OK
    assert await verdict(adapter, "bob") == (NOT_FOUND, "bob is not whitelisted")


async def test_integer_values_compare_as_text() -> None:
    adapter = Harness().adapter(overrides=["8080"])
    assert (await verdict(adapter, 8080))[0] == OK
    assert (await verdict(adapter, 9090))[0] == NOT_FOUND


async def test_regex_entries_must_match_the_whole_value() -> None:
    adapter = Harness().adapter(overrides=[r"v[0-9]+", r"canary-.*"], entryType="REGEX")
    assert (await verdict(adapter, "v12"))[0] == OK
    assert (await verdict(adapter, "canary-eu"))[0] == OK
    assert await verdict(adapter, "v12-beta") == (NOT_FOUND, "v12-beta is not whitelisted")
    assert (await verdict(adapter, "xv1"))[0] == NOT_FOUND


async def test_regex_blacklist() -> None:
    adapter = Harness().adapter(overrides=[r".*\.internal"], entryType="REGEX", blacklist=True)
    assert await verdict(adapter, "db.internal") == (PERMISSION_DENIED,
                                                      "db.internal is blacklisted")
    assert (await verdict(adapter, "db.example.com"))[0] == OK


# ---- IP lists -------------------------------------------------------------------------

IP_LIST = ["10.57.0.0/16", "192.168.1.7", "2001:db8:abcd::/48", "::1"]


@pytest.mark.parametrize("value", [
    "10.57.3.4", "10.57.255.255", "192.168.1.7", "2001:db8:abcd:12::9", "::1",
    ipaddress.ip_address("10.57.0.1"), ipaddress.ip_address("2001:db8:abcd::1"),
    bytes([10, 57, 1, 2]), ipaddress.ip_address("2001:db8:abcd::5").packed,
    "::ffff:10.57.9.9", ipaddress.ip_address("::ffff:192.168.1.7").packed,
])
async def test_ip_list_contains(value: Any) -> None:
    adapter = Harness().adapter(overrides=IP_LIST, entryType="IP_ADDRESSES")
    assert (await verdict(adapter, value))[0] == OK


@pytest.mark.parametrize(("value", "shown"), [
    ("10.58.0.1", "10.58.0.1"), ("192.168.1.8", "192.168.1.8"),
    ("2001:db8:abce::1", "2001:db8:abce::1"), (bytes([10, 56, 0, 1]), "10.56.0.1"),
    (ipaddress.ip_address("::2"), "::2"),
])
async def test_ip_list_does_not_contain(value: Any, shown: str) -> None:
    adapter = Harness().adapter(overrides=IP_LIST, entryType="IP_ADDRESSES")
    assert await verdict(adapter, value) == (NOT_FOUND, f"{shown} is not whitelisted")


async def test_ip_blacklist_with_cidr() -> None:
    adapter = Harness().adapter(overrides=["203.0.113.0/24", "2001:db8::/32"],
                                entryType="IP_ADDRESSES", blacklist=True)
    assert await verdict(adapter, "203.0.113.9") == (PERMISSION_DENIED,
                                                      "203.0.113.9 is blacklisted")
    assert (await verdict(adapter, "2001:db8:1::1"))[0] == PERMISSION_DENIED
    assert (await verdict(adapter, "198.51.100.1"))[0] == OK


async def test_whole_address_space_entry() -> None:
    adapter = Harness().adapter(overrides=["0.0.0.0/0"], entryType="IP_ADDRESSES")
    assert (await verdict(adapter, "8.8.8.8"))[0] == OK
    assert (await verdict(adapter, "2001:4860::8888"))[0] == NOT_FOUND  # v4 range only


@pytest.mark.parametrize(("value", "shown"), [
    ("not-an-ip", "not-an-ip"), ("10.0.0.256", "10.0.0.256"), (b"abc", "abc"),
    (42, "42"),
])
async def test_a_value_that_is_not_an_ip_is_an_invalid_argument(value: Any, shown: str) -> None:
    for blacklist in (False, True):  # never silently allowed by a blacklist either
        adapter = Harness().adapter(overrides=IP_LIST, entryType="IP_ADDRESSES",
                                    blacklist=blacklist)
        assert await verdict(adapter, value) == (INVALID_ARGUMENT,
                                                 f"{shown} is not a valid IP address")


async def test_ip_values_in_a_string_list_compare_as_text() -> None:
    adapter = Harness().adapter(overrides=["10.0.0.1"])
    assert (await verdict(adapter, bytes([10, 0, 0, 1])))[0] == OK
    assert (await verdict(adapter, ipaddress.ip_address("10.0.0.1")))[0] == OK


# ---- params ---------------------------------------------------------------------------

@pytest.mark.parametrize(("params", "words"), [
    ({"entryType": "IP_ADDRESSES", "overrides": ["10.0.0.0/33"]}, ["overrides", "10.0.0.0/33"]),
    ({"entryType": "IP_ADDRESSES", "overrides": ["1.2.3.4", "example.com"]},
     ["overrides", "example.com"]),
    ({"entryType": "IP_ADDRESSES", "overrides": ["2001:db8::/129"]}, ["overrides", "/129"]),
    ({"entryType": "REGEX", "overrides": ["a(b"]}, ["overrides", "a(b",
                                                     "not a valid regular expression"]),
    ({"entryType": "WORDS"}, ["entryType"]),
    ({"providerUrl": "ftp://lists.example.com/x"}, ["providerUrl", "http(s)"]),
    ({"providerUrl": "http://"}, ["providerUrl"]),
    ({"providerUrl": "http://lists", "refreshInterval": "10m", "ttl": "5m"},
     ["ttl", "refreshInterval"]),
    ({"refreshInterval": "0s"}, ["refreshInterval", "greater than 0"]),
    ({"cachingInterval": "soon"}, ["cachingInterval", "invalid duration"]),
    ({"cachingUseCount": -1}, ["cachingUseCount"]),
    ({"blackList": True}, ["blackList", "Extra inputs are not permitted"]),
])
def test_bad_params_name_the_field(params: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        ListParams.model_validate(params)
    for word in words:
        assert word in str(info.value)


def test_ttl_shorter_than_refresh_is_fine_without_a_provider() -> None:
    params = ListParams.model_validate({"refreshInterval": "10m", "ttl": "5m"})
    assert params.ttl == dt.timedelta(minutes=5)


def test_istio_handler_yaml_loads_unchanged() -> None:
    doc = yaml.safe_load("""
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: staticips, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params:
    providerUrl: http://lists.example.com/ips
    refreshInterval: 30s
    ttl: 120s
    cachingInterval: 10s
    cachingUseCount: 100
    overrides: ["10.57.0.0/16"]
    entryType: IP_ADDRESSES
    blacklist: false
""")
    params = ListParams.model_validate(doc["spec"]["params"])
    assert params.entry_type is listchecker.EntryType.IP_ADDRESSES
    assert (params.refresh_interval, params.ttl) == (dt.timedelta(seconds=30),
                                                     dt.timedelta(seconds=120))


def test_registers_through_the_hook() -> None:
    plugins = load_plugins(extra=[listchecker], entry_points=False)
    assert plugins.adapters.get("listchecker") is ListCheckerAdapter


# ---- provider bodies ------------------------------------------------------------------

@pytest.mark.parametrize(("body", "entries"), [
    ("- a\n- b\n", ["a", "b"]),
    ("# served by lists\n- yes\n- '010'\n", ["yes", "010"]),  # stay strings
    ("a\nb\r\n\n  c  \n", ["a", "b", "c"]),
    ("# comment\nv[0-9]+\n[a-z]+\n", ["v[0-9]+", "[a-z]+"]),  # a flow list is not YAML here
    ("whitelist:\n- 10.0.0.0/8\n- 10.1.2.3\n", ["10.0.0.0/8", "10.1.2.3"]),
    ("---\n", []),
    ("", []),
])
def test_provider_bodies(body: str, entries: list[str]) -> None:
    assert parse_body(body.encode()) == entries


@pytest.mark.parametrize("body", ["- a\n- {b: c}\n", "- a\n  - b: [\n", b"\xff\xfe"])
def test_bad_provider_bodies_raise(body: str | bytes) -> None:
    with pytest.raises((ValueError, yaml.YAMLError)):
        parse_body(body if isinstance(body, bytes) else body.encode())


# ---- a real provider ------------------------------------------------------------------

class Provider:
    """An HTTP list provider whose answer the test changes."""

    def __init__(self) -> None:
        self.body, self.status, self.hits = "", 200, 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/list", self._serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/list"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _serve(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(status=self.status, text=self.body)


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    p = Provider()
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    yield h
    await h.close()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (briefly, repeatedly) for the background poller to do something."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the poller"
        await asyncio.sleep(0.01)


async def test_start_fetches_the_list_and_merges_overrides(harness: Harness,
                                                           provider: Provider) -> None:
    provider.body = "- alpha\n- beta\n"
    adapter = await harness.start(provider, overrides=["gamma"])
    assert adapter.status is Status.OK and provider.hits == 1
    assert (await verdict(adapter, "alpha"))[0] == OK
    assert (await verdict(adapter, "gamma"))[0] == OK
    assert await verdict(adapter, "delta") == (NOT_FOUND, "delta is not whitelisted")


async def test_poller_installs_a_changed_list(harness: Harness, provider: Provider) -> None:
    provider.body = "alpha\nbeta\n"
    adapter = await harness.start(provider)
    provider.body = "alpha\ndelta\n"
    await eventually(lambda: harness.log.events("list installed") == 2)
    assert (await verdict(adapter, "delta"))[0] == OK
    assert (await verdict(adapter, "beta"))[0] == NOT_FOUND


async def test_an_unchanged_list_is_not_reinstalled(harness: Harness,
                                                    provider: Provider) -> None:
    provider.body = "alpha\n"
    await harness.start(provider)
    await eventually(lambda: provider.hits >= 4)
    assert harness.log.events("list installed") == 1


async def test_failures_keep_the_last_list_until_ttl(harness: Harness,
                                                     provider: Provider) -> None:
    provider.body = "alpha\n"
    adapter = await harness.start(provider, ttl="60s")
    provider.status = 500
    await eventually(lambda: adapter.status is Status.ERROR)
    harness.clock.t += 59  # still within ttl of the last good fetch
    assert (await verdict(adapter, "alpha"))[0] == OK
    assert harness.errors >= 1  # each failed fetch is counted; checks still pass

    harness.clock.t += 2  # past ttl: the list can no longer be trusted
    with pytest.raises(BackendError, match="expired.*HTTP 500"):
        await adapter.check(entry("alpha"))  # raised to the dispatcher, which counts it

    provider.status = 200  # the provider comes back: the next poll revives the list
    await eventually(lambda: adapter.status is Status.OK)
    assert (await verdict(adapter, "alpha"))[0] == OK


async def test_a_provider_that_goes_away(harness: Harness, provider: Provider) -> None:
    provider.body = "- 10.0.0.0/8\n"
    adapter = await harness.start(provider, entryType="IP_ADDRESSES", ttl="30s")
    await provider.stop()
    await eventually(lambda: adapter.status is Status.ERROR)
    assert (await verdict(adapter, "10.1.1.1"))[0] == OK
    harness.clock.t += 31
    with pytest.raises(BackendError, match="expired"):
        await adapter.check(entry("10.1.1.1"))


async def test_provider_down_at_start_does_not_fail_start(harness: Harness,
                                                          provider: Provider) -> None:
    await provider.stop()
    adapter = await harness.start(provider, overrides=["alpha"])
    assert adapter.status is Status.ERROR
    with pytest.raises(BackendError, match="not loaded"):
        await adapter.check(entry("alpha"))
    assert harness.errors == 1
    assert harness.log.events("list fetch failed") >= 1


async def test_a_bad_list_keeps_the_previous_one(harness: Harness, provider: Provider) -> None:
    provider.body = "whitelist:\n- 10.0.0.0/8\n"
    adapter = await harness.start(provider, entryType="IP_ADDRESSES")
    provider.body = "whitelist:\n- 10.0.0.0/8\n- 300.1.1.1\n"
    await eventually(lambda: adapter.status is Status.ERROR)
    assert (await verdict(adapter, "10.2.3.4"))[0] == OK
    failure = next(kw for level, e, kw in harness.log.records if e == "list fetch failed")
    assert "300.1.1.1" in failure["error"]


async def test_provider_regex_list(harness: Harness, provider: Provider) -> None:
    provider.body = "api-[a-z]+\n"
    adapter = await harness.start(provider, entryType="REGEX", blacklist=True)
    assert (await verdict(adapter, "api-admin"))[0] == PERMISSION_DENIED
    assert (await verdict(adapter, "api-v2"))[0] == OK


async def test_stop_ends_polling(harness: Harness, provider: Provider) -> None:
    provider.body = "alpha\n"
    adapter = await harness.start(provider)
    await eventually(lambda: provider.hits >= 2)
    await adapter.stop()
    assert adapter.status is Status.NOT_READY
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("listchecker:")]
    hits = provider.hits
    await asyncio.sleep(0.2)  # four refresh intervals
    assert provider.hits == hits


async def test_a_crashed_poller_shows_in_status_and_logs(harness: Harness,
                                                         provider: Provider) -> None:
    provider.body = "alpha\n"
    adapter = await harness.start(provider)

    async def broken(body: bytes) -> None:
        raise RuntimeError("bug")

    adapter._install = broken  # type: ignore[method-assign]
    await eventually(lambda: adapter.status is Status.ERROR)
    assert any(e == "list poller crashed" and "bug" in kw["error"]
               for _, e, kw in harness.log.records)
