"""The caching Mixer client: check before a request, report after it.

``Gate.check`` answers from the check cache when it can and asks the hub otherwise
(identical requests in flight share one call); quotas come from the prefetcher. When the
hub cannot answer (down, timed out, erroring) the fail policy decides: closed (default)
denies with 503 UNAVAILABLE, open lets the request through; both are counted
(``mixerhub_proxy_fail_policy_total``) and logged. ``Gate.report`` queues a record for the
report batcher. The reverse proxy, the ASGI and the WSGI middlewares all sit on a Gate.
Over TLS, the Gate checks the client's TLS files every ``tls_reload_interval`` seconds
and moves to a new channel when they change (``mixerhub_proxy_tls_reloads_total``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from mixerhub.errors import MixerhubError
from mixerhub.logs import get_logger
from mixerhub.proxy_filter.batcher import BatchOptions, ReportBatcher
from mixerhub.proxy_filter.check_cache import CheckCache
from mixerhub.proxy_filter.flights import Flights, wait
from mixerhub.proxy_filter.metrics import ProxyMetrics
from mixerhub.proxy_filter.mixer_client import HubTls, MixerClient
from mixerhub.proxy_filter.prefetch import PrefetchOptions, QuotaOutcome, QuotaPrefetcher
from mixerhub.verdict import QuotaGrant, QuotaRequest, Verdict, http_status

UNAVAILABLE, INTERNAL = 14, 13
#: What "the hub could not answer" looks like from here.
HUB_FAILURES: tuple[type[BaseException], ...] = (grpc.RpcError, asyncio.TimeoutError, OSError,
                                                 MixerhubError)
_RETRY_QUOTA = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclasses.dataclass(frozen=True)
class GateOptions:
    check_timeout: float = 5.0  # s per hub call (Envoy's Mixer client: 5 s)
    fail_open: bool = False  # hub unreachable: let requests through (counted)
    cache_size: int = 10_000  # check cache entries; 0 turns the cache off
    prefetch: PrefetchOptions = dataclasses.field(default_factory=PrefetchOptions)
    reports: BatchOptions = dataclasses.field(default_factory=BatchOptions)
    tls_reload_interval: float = 10.0  # s between checks of the hub TLS files; 0: never


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one request."""

    allowed: bool
    http_status: int = 200
    code: int = 0  # google.rpc.Code of a denial
    message: str = ""
    verdict: Verdict | None = None  # the precondition (None when the hub failed)
    cache_hit: bool = False
    quota_cache_hit: bool = False
    fail_policy: str | None = None  # "open" or "closed" when the hub could not answer


class Gate:
    def __init__(self, client: MixerClient, options: GateOptions | None = None,
                 metrics: ProxyMetrics | None = None, log: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.options = options or GateOptions()
        self.metrics = metrics or ProxyMetrics()
        self.log = log or get_logger("mixerhub.proxy")
        self.cache = CheckCache(self.options.cache_size, clock=clock) \
            if self.options.cache_size > 0 else None
        if self.cache is not None:
            self.metrics.cache_entries.set_function(lambda: len(self.cache or ()))
        self.prefetcher = QuotaPrefetcher(self._fetch_quota, self.options.prefetch, clock,
                                          self.metrics, self.log)
        self.reports = ReportBatcher(client.send_report, client.encoder, self.options.reports,
                                     self.metrics, self.log)
        self._flights = Flights()
        self._failure_log = _EverySecond()
        m = self.metrics
        self._outcomes = {o: m.requests.labels(o)
                          for o in ("allowed", "denied", "fail_open", "fail_closed")}
        self._calls = {(rpc, r): m.hub_calls.labels(rpc, r)
                       for rpc in ("check", "quota") for r in ("ok", "error")}
        #: Called with the new HubTls after a reload (the QuotaSpec fetcher follows).
        self.tls_listeners: list[Callable[[HubTls], None]] = []
        self._tls_task: asyncio.Task[None] | None = None

    @classmethod
    def connect(cls, hub: str, options: GateOptions | None = None,
                metrics: ProxyMetrics | None = None, log: Any = None,
                tls: HubTls | None = None) -> Gate:
        """A Gate on a new channel to ``hub`` (HOST:PORT of its gRPC port; over TLS with
        ``tls``)."""
        options = options or GateOptions()
        return cls(MixerClient(hub, timeout=options.check_timeout, tls=tls), options,
                   metrics, log)

    async def start(self) -> None:
        self.reports.start()
        if self.client.tls is not None and self.client.tls.files \
                and self.options.tls_reload_interval > 0:
            self._tls_task = asyncio.get_running_loop().create_task(self._watch_tls())

    async def _watch_tls(self) -> None:
        while True:
            await asyncio.sleep(self.options.tls_reload_interval)
            self.reload_tls()

    def reload_tls(self) -> bool:
        """Move to a new channel if the hub TLS files changed; True when it did. Unusable
        files (or any other failure) are counted and logged, and the running set stays."""
        try:
            if not self.client.reload_tls():
                return False
            tls = self.client.tls
            assert tls is not None  # noqa: S101 - reloaded, so there is a set
            if self.cache is not None:  # verdicts the hub gave the old identity
                self.cache.clear()
            for listener in self.tls_listeners:
                listener(tls)
        except Exception as exc:  # noqa: BLE001 - the watch must outlive any surprise
            self.metrics.tls_reloads.labels("error").inc()
            self.log.error("hub TLS reload failed; the running certificates stay",
                           error=_describe(exc))
            return False
        self.metrics.tls_reloads.labels("ok").inc()
        self.log.info("hub TLS files reloaded", hub=self.client.target, mutual=tls.mutual)
        return True

    async def close(self) -> None:
        """Flush reports (``close_timeout`` at most), stop prefetching, close the channel."""
        if self._tls_task is not None:
            self._tls_task.cancel()
            await asyncio.gather(self._tls_task, return_exceptions=True)
        await self.reports.close()
        await self.prefetcher.close()
        await self.client.close()

    def report(self, values: Mapping[str, Any]) -> bool:
        """Queue a report record; False when the buffer was full (counted)."""
        return self.reports.add(values)

    # -- check -----------------------------------------------------------------------

    async def check(self, values: Mapping[str, Any],
                    quotas: Mapping[str, QuotaRequest] | None = None) -> Decision:
        """Decide a request with these attribute values, charging ``quotas``."""
        try:
            verdict, hit = await self._precondition(values)
            if not verdict.ok:
                return self._denied(verdict.code, verdict.message, verdict, hit)
            outcome = await self._quotas(values, quotas) if quotas else _NO_QUOTA
        except HUB_FAILURES as exc:
            return self._failed(exc)
        if not outcome.ok:
            return self._denied(outcome.code, outcome.message, verdict, hit)
        self._outcomes["allowed"].inc()
        return Decision(True, 200, verdict=verdict, cache_hit=hit,
                        quota_cache_hit=outcome.prefetched)

    async def _precondition(self, values: Mapping[str, Any]) -> tuple[Verdict, bool]:
        cache = self.cache
        if cache is None:
            return await self._remote_check(values), False
        verdict = cache.lookup(values)
        if verdict is not None:
            self.metrics.cache_hits.inc()
            return verdict, True
        self.metrics.cache_misses.inc()
        keys = cache.flight_keys(values)
        pending = self._flights.find(keys)
        if pending is not None:
            await wait(pending)
            verdict = cache.lookup(values)
            if verdict is not None:
                return verdict, True
        with self._flights.flying(keys):
            verdict = await self._remote_check(values)
            cache.store(verdict, values)
        return verdict, False

    async def _remote_check(self, values: Mapping[str, Any]) -> Verdict:
        started = time.perf_counter()
        try:
            result = await self.client.check(values, timeout=self.options.check_timeout)
        except BaseException:
            self._calls["check", "error"].inc()
            raise
        self._calls["check", "ok"].inc()
        self.metrics.hub_latency.labels("check").observe(time.perf_counter() - started)
        return result.verdict

    async def _quotas(self, values: Mapping[str, Any],
                      quotas: Mapping[str, QuotaRequest]) -> QuotaOutcome:
        prefetched = True
        for name, request in quotas.items():
            outcome = await self.prefetcher.acquire(name, request.amount, values)
            if not outcome.ok:
                return outcome
            prefetched = prefetched and outcome.prefetched
        return QuotaOutcome(True, prefetched=prefetched)

    async def _fetch_quota(self, values: Mapping[str, Any], name: str, amount: int
                           ) -> QuotaGrant:
        """One best-effort allocation; a lost answer is retried once with the same
        deduplication_id, so the hub does not allocate twice."""
        dedup_id = uuid.uuid4().hex
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                result = await self.client.check(values, {name: QuotaRequest(amount, True)},
                                                 dedup_id, self.options.check_timeout)
            except grpc.aio.AioRpcError as exc:
                self._calls["quota", "error"].inc()
                if attempt == 1 and exc.code() in _RETRY_QUOTA:
                    continue
                raise
            self._calls["quota", "ok"].inc()
            self.metrics.hub_latency.labels("quota").observe(time.perf_counter() - started)
            break
        grant = result.quotas.get(name)
        return grant if grant is not None else QuotaGrant(
            0, code=INTERNAL, message=f"the hub did not answer for quota {name}")

    # -- outcomes --------------------------------------------------------------------

    def _denied(self, code: int, message: str, verdict: Verdict | None, hit: bool) -> Decision:
        self._outcomes["denied"].inc()
        return Decision(False, http_status(code), code, message, verdict, cache_hit=hit)

    def _failed(self, exc: BaseException) -> Decision:
        policy = "open" if self.options.fail_open else "closed"
        self.metrics.fail_policy.labels(policy).inc()
        self._outcomes[f"fail_{policy}"].inc()
        error = _describe(exc)
        suppressed = self._failure_log.due()
        if suppressed is not None:
            self.log.warning("hub unavailable; fail policy applied", policy=policy,
                             error=error, not_logged_since=suppressed)
        if self.options.fail_open:
            return Decision(True, 200, fail_policy="open")
        return Decision(False, 503, UNAVAILABLE, f"policy check unavailable: {error}",
                        fail_policy="closed")


_NO_QUOTA = QuotaOutcome(True, prefetched=True)


class _EverySecond:
    """Log throttle: a hub outage must not write a line per request (the counter counts)."""

    def __init__(self) -> None:
        self._last = float("-inf")
        self._skipped = 0

    def due(self) -> int | None:
        """None while throttled; else how many were skipped since the last line."""
        now = time.monotonic()
        if now - self._last < 1.0:
            self._skipped += 1
            return None
        skipped, self._last, self._skipped = self._skipped, now, 0
        return skipped


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__
