"""``listchecker``: is a listentry's value on a list?

The list is the ``overrides`` from the params plus, when ``providerUrl`` is set, the entries
fetched from that URL (once in ``start()``, then every ``refreshInterval`` in a background
task). Params keep Istio 1.4's names so Mixer handlers load unchanged.

Lookups never scan a string list: entries are precomputed into sets when a list is
installed. IP lists are sets of network prefixes grouped by prefix length, so a lookup costs
one set probe per distinct prefix length. Regex lists are the one linear case.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import hashlib
import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NoReturn, Protocol

import aiohttp
import yaml
from pydantic import Field, ValidationInfo, field_validator

from mixerhub import hookimpl
from mixerhub.adapter import (AdapterEnv, BackendError, BaseAdapter, CheckResult, Params,
                              Status)
from mixerhub.adapters._params import Duration
from mixerhub.plugins import AdapterRegistry

OK, INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED = 0, 3, 5, 7

#: A provider answer larger than this is refused: the whole list is held in memory.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Upper bound on one fetch, so a hung provider cannot hold ``start()`` for long.
FETCH_TIMEOUT = dt.timedelta(seconds=10)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# BaseLoader keeps every scalar a string: a list entry "yes" or "010" must not become a
# bool or an int. The C loader is much faster on large lists when PyYAML has it.
_YAML_LOADER: Any = getattr(yaml, "CBaseLoader", yaml.BaseLoader)


class EntryType(str, enum.Enum):
    """How list entries and values are compared (Istio's ``ListEntryType`` names)."""

    STRINGS = "STRINGS"
    CASE_INSENSITIVE_STRINGS = "CASE_INSENSITIVE_STRINGS"
    IP_ADDRESSES = "IP_ADDRESSES"
    REGEX = "REGEX"


class ListParams(Params):
    # Field order matters: validators of later fields read earlier ones from `info.data`.
    provider_url: str = Field(
        "", alias="providerUrl",
        description="http(s) URL serving the list; empty for a list made of overrides only")
    refresh_interval: Duration = Field(
        "60s", alias="refreshInterval", validate_default=True,
        description="How often the provider is polled for a new list")
    ttl: Duration = Field(
        "300s", validate_default=True,
        description="How long after the last successful fetch the list stays usable; "
                    "past it every check fails (the rule's fail policy applies)")
    caching_interval: Duration = Field(
        "300s", alias="cachingInterval", validate_default=True,
        description="How long a caller may reuse a verdict")
    caching_use_count: int = Field(
        10_000, ge=0, alias="cachingUseCount",
        description="How many times a caller may reuse a verdict")
    entry_type: EntryType = Field(
        EntryType.STRINGS, alias="entryType",
        description="STRINGS, CASE_INSENSITIVE_STRINGS, IP_ADDRESSES (addresses or CIDR "
                    "ranges, IPv4 and IPv6) or REGEX (each entry must match the whole value)")
    overrides: tuple[str, ...] = Field(
        (), description="Entries that are always on the list, whatever the provider serves")
    blacklist: bool = Field(
        False, description="true: a listed value is denied; false: only listed values pass")

    @field_validator("provider_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if url:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL with a host")
        return url

    @field_validator("refresh_interval")
    @classmethod
    def _positive(cls, interval: dt.timedelta) -> dt.timedelta:
        if interval <= dt.timedelta(0):
            raise ValueError("must be greater than 0")
        return interval

    @field_validator("ttl")
    @classmethod
    def _ttl_covers_refresh(cls, ttl: dt.timedelta, info: ValidationInfo) -> dt.timedelta:
        refresh = info.data.get("refresh_interval")
        if info.data.get("provider_url") and refresh is not None and ttl < refresh:
            raise ValueError(f"ttl ({ttl.total_seconds():g}s) must be at least refreshInterval "
                             f"({refresh.total_seconds():g}s)")
        return ttl

    @field_validator("overrides")
    @classmethod
    def _entries_parse(cls, overrides: tuple[str, ...], info: ValidationInfo
                       ) -> tuple[str, ...]:
        entry_type = info.data.get("entry_type")
        if entry_type is not None:
            build_matcher(entry_type, overrides)  # raises ValueError naming the bad entry
        return overrides


# ---- values ---------------------------------------------------------------------------

class BadValue(Exception):
    """A value that cannot be compared with this list (e.g. not an IP for an IP list)."""


def as_ip(value: Any) -> IPAddress:
    """An IP from an ``ipaddress`` object, 4 or 16 raw bytes (the wire form) or text.
    IPv4-mapped IPv6 addresses become IPv4, so ``::ffff:10.0.0.1`` matches ``10.0.0.0/8``."""
    ip = _to_ip(value)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _to_ip(value: Any) -> IPAddress:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    if isinstance(value, (bytes, bytearray)) and len(value) in (4, 16):
        return ipaddress.ip_address(bytes(value))
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(value.strip())
    raise BadValue(f"{as_text(value)} is not a valid IP address")


def as_text(value: Any) -> str:
    """The text a value is compared (and quoted in messages) as."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        if len(value) in (4, 16):  # IP_ADDRESS attributes travel as raw bytes
            return str(ipaddress.ip_address(bytes(value)))
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---- matchers -------------------------------------------------------------------------

class Matcher(Protocol):
    size: int

    def contains(self, value: Any) -> bool: ...


class StringSet:
    def __init__(self, entries: Iterable[str]) -> None:
        self._entries = frozenset(entries)
        self.size = len(self._entries)

    def contains(self, value: Any) -> bool:
        return as_text(value) in self._entries


class FoldedStringSet:
    """Case-insensitive: casefold (not lower) so e.g. "STRASSE" matches "straße"."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._entries = frozenset(e.casefold() for e in entries)
        self.size = len(self._entries)

    def contains(self, value: Any) -> bool:
        return as_text(value).casefold() in self._entries


class AddressSet:
    """Addresses and CIDR ranges as {(version, prefix length): {network prefix bits}}."""

    def __init__(self, entries: Iterable[str]) -> None:
        tables: dict[int, dict[int, set[int]]] = {4: {}, 6: {}}
        for entry in entries:
            net = parse_network(entry)
            prefix = int(net.network_address) >> (net.max_prefixlen - net.prefixlen)
            tables[net.version].setdefault(net.prefixlen, set()).add(prefix)
        self._tables = {version: tuple((bits - plen, frozenset(nets))
                                       for plen, nets in sorted(by_len.items()))
                        for version, by_len, bits in ((4, tables[4], 32), (6, tables[6], 128))}
        self.size = sum(len(nets) for by_len in tables.values() for nets in by_len.values())

    def contains(self, value: Any) -> bool:
        ip = as_ip(value)
        number = int(ip)
        return any((number >> shift) in nets for shift, nets in self._tables[ip.version])


class RegexList:
    def __init__(self, entries: Iterable[str]) -> None:
        self._patterns = tuple(compile_regex(e) for e in entries)
        self.size = len(self._patterns)

    def contains(self, value: Any) -> bool:
        text = as_text(value)
        return any(p.fullmatch(text) is not None for p in self._patterns)


def parse_network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        # strict=False: "10.1.2.3/8" means 10.0.0.0/8, as Go's ParseCIDR (Mixer) read it.
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ValueError(f"entry {entry!r} is not an IP address or CIDR range") from None


def compile_regex(entry: str) -> re.Pattern[str]:
    try:
        return re.compile(entry)
    except re.error as e:
        raise ValueError(f"entry {entry!r} is not a valid regular expression: {e}") from None


_MATCHERS: dict[EntryType, Callable[[Iterable[str]], Matcher]] = {
    EntryType.STRINGS: StringSet,
    EntryType.CASE_INSENSITIVE_STRINGS: FoldedStringSet,
    EntryType.IP_ADDRESSES: AddressSet,
    EntryType.REGEX: RegexList,
}


def build_matcher(entry_type: EntryType, entries: Iterable[str]) -> Matcher:
    """A matcher over ``entries`` (empty ones skipped); ``ValueError`` names a bad entry."""
    return _MATCHERS[entry_type](e for e in entries if e.strip())


# ---- provider bodies ------------------------------------------------------------------

def parse_body(body: bytes) -> list[str]:
    """Entries from a provider's answer: a YAML list of strings (or Istio's IP-list form,
    a mapping with a ``whitelist`` list), else one entry per line. Lines starting with
    ``#`` are comments in both forms."""
    text = body.decode("utf-8")
    lines = [line.strip() for line in text.splitlines()]
    meaningful = [line for line in lines if line and not line.startswith("#")]
    if meaningful and _is_yaml_start(meaningful[0]):
        return _yaml_entries(text)
    return meaningful


def _is_yaml_start(line: str) -> bool:
    # Only block-style YAML is recognised: a flow list "[a-z]+" is a fine regex entry.
    return line in ("-", "---") or line.startswith("- ") or line.startswith("whitelist:")


def _yaml_entries(text: str) -> list[str]:
    data = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - BaseLoader builds no objects
    if isinstance(data, dict) and set(data) == {"whitelist"}:
        data = data["whitelist"]
    if data is None or data == "":  # an empty document (BaseLoader reads it as "")
        return []
    if not isinstance(data, list) or not all(isinstance(e, str) for e in data):
        raise ValueError("expected a YAML list of strings")
    return [e.strip() for e in data]


def _install_list(body: bytes, entry_type: EntryType, overrides: tuple[str, ...]) -> Matcher:
    return build_matcher(entry_type, [*parse_body(body), *overrides])


class FetchError(Exception):
    """The provider answered, but not with a list."""


#: What a failed refresh can raise; anything else is a bug and is not swallowed.
_REFRESH_ERRORS = (aiohttp.ClientError, TimeoutError, FetchError, ValueError, yaml.YAMLError)


# ---- the adapter ----------------------------------------------------------------------

class ListCheckerAdapter(BaseAdapter):
    """Checks listentry values against a whitelist or blacklist."""

    name: ClassVar[str] = "listchecker"
    Params = ListParams
    templates: ClassVar[frozenset[str]] = frozenset({"listentry"})

    def __init__(self, params: ListParams, env: AdapterEnv) -> None:
        super().__init__(params, env)
        self.params: ListParams = params
        self._ok = self._result(OK, "")
        # Without a provider the list is the overrides, known now and never stale.
        self._matcher: Matcher | None = (
            None if params.provider_url else build_matcher(params.entry_type, params.overrides))
        self._loaded_at: float | None = None  # env.clock.monotonic() of the last good fetch
        self._digest = b""
        self._last_error = "no fetch attempted yet"
        self._session: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task[None] | None = None

    # -- lifecycle --

    async def start(self) -> None:
        if not self.params.provider_url:
            self.status = Status.OK
            return
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT.total_seconds())
        self._session = aiohttp.ClientSession(timeout=timeout)
        await self.refresh()  # a provider that is down does not fail start: status ERROR
        self._poller = asyncio.create_task(self._poll(), name=f"listchecker:{self.env.handler}")
        self._poller.add_done_callback(self._poller_ended)

    async def stop(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            # wait() never raises: a crash was already reported by _poller_ended.
            await asyncio.wait([poller])
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.status = Status.NOT_READY

    async def _poll(self) -> None:
        interval = self.params.refresh_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            await self.refresh()

    def _poller_ended(self, task: asyncio.Task[None]) -> None:
        # Only a bug ends the poller early (refresh() absorbs fetch failures): make it seen
        # in health and logs rather than let the list go stale quietly.
        if task.cancelled() or task.exception() is None:
            return
        self.status = Status.ERROR
        self._last_error = f"list poller crashed: {task.exception()!r}"
        self.env.logger.error("list poller crashed", url=self.params.provider_url,
                              error=self._last_error)

    # -- fetching --

    async def refresh(self) -> bool:
        """Fetch the list once; on failure keep the previous list (until ``ttl``)."""
        try:
            await self._install(await self._download())
        except _REFRESH_ERRORS as e:
            self._last_error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            self.status = Status.ERROR
            self.env.logger.warning("list fetch failed", url=self.params.provider_url,
                                    error=self._last_error)
            self.env.on_error()
            return False
        self._loaded_at = self.env.clock.monotonic()
        self.status = Status.OK
        return True

    async def _download(self) -> bytes:
        if self._session is None:
            raise FetchError("adapter not started")
        async with self._session.get(self.params.provider_url) as response:
            if response.status != 200:
                raise FetchError(f"HTTP {response.status}")
            return await _read_bounded(response)

    async def _install(self, body: bytes) -> None:
        digest = hashlib.sha256(body).digest()
        if digest == self._digest and self._matcher is not None:
            return  # unchanged: skip re-parsing a possibly large list
        # Parsing and indexing a big list is CPU work: keep it off the event loop.
        matcher = await asyncio.to_thread(_install_list, body, self.params.entry_type,
                                          self.params.overrides)
        self._matcher, self._digest = matcher, digest
        self.env.logger.info("list installed", url=self.params.provider_url,
                             entries=matcher.size)

    # -- checking --

    async def check(self, instance: Any) -> CheckResult:
        matcher = self._usable_matcher()
        value = instance.value
        try:
            found = matcher.contains(value)
        except BadValue as e:
            return self._result(INVALID_ARGUMENT, str(e))
        return self._verdict(found, value)

    def _usable_matcher(self) -> Matcher:
        matcher, url = self._matcher, self.params.provider_url
        if matcher is None:
            self._fail(f"list from {url} not loaded: {self._last_error}")
        if self._loaded_at is not None:
            age = self.env.clock.monotonic() - self._loaded_at
            if age > self.params.ttl.total_seconds():
                self._fail(f"list from {url} expired: last good fetch {age:.1f}s ago "
                           f"(ttl {self.params.ttl.total_seconds():g}s); "
                           f"last error: {self._last_error}")
        return matcher

    def _fail(self, message: str) -> NoReturn:
        # Not counted here: the dispatcher counts every error an adapter raises to it.
        raise BackendError(message)

    def _verdict(self, found: bool, value: Any) -> CheckResult:
        if found == self.params.blacklist:  # listed on a blacklist, or missing from a whitelist
            if found:
                return self._result(PERMISSION_DENIED, f"{as_text(value)} is blacklisted")
            return self._result(NOT_FOUND, f"{as_text(value)} is not whitelisted")
        return self._ok

    def _result(self, code: int, message: str) -> CheckResult:
        return CheckResult(code=code, message=message,
                           valid_duration=self.params.caching_interval,
                           valid_use_count=self.params.caching_use_count)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise FetchError(f"list larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@hookimpl
def mixerhub_register_adapters(registry: AdapterRegistry) -> None:
    registry.register(ListCheckerAdapter)
