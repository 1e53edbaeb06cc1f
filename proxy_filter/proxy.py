"""``mixerhub proxy``: a reverse proxy that checks with the hub before forwarding a request
and reports after it (docs/proxy.md).

HTTP/1.1 with keep-alive on both sides; bodies stream both ways (never buffered);
hop-by-hop fields are dropped, ``x-forwarded-for/proto/host`` set and ``x-request-id`` made
when missing. A denial answers with the status DESIGN §5 maps its code to and the
denial's message as the body; a hub that cannot answer gets the fail policy (closed by
default: 503). Allowed requests get the rule's request header operations on the way up
and its response header operations on the way back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from mixerhub.logs import get_logger
from mixerhub.proxy_filter.attributes import Exchange, header_map, report_record, request_values
from mixerhub.proxy_filter.gate import Decision, Gate, GateOptions
from mixerhub.proxy_filter.headers import apply_ops, end_to_end, forward, request_id
from mixerhub.proxy_filter.metrics import ProxyMetrics
from mixerhub.proxy_filter.mixer_client import HubTls
from mixerhub.proxy_filter.quotaspecs import QuotaSpecSource, default_hub_http

#: Answered here, so never passed on (the proxy sends "100 Continue" once allowed).
_NOT_FORWARDED = ("expect",)
_CHUNK = 64 * 1024


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    listen: str = "127.0.0.1:8080"
    upstream: str = "http://127.0.0.1:8000"
    hub: str = "127.0.0.1:9091"  # gRPC
    hub_http: str | None = None  # for QuotaSpecs; default: the hub's host, port 9093
    hub_tls: HubTls | None = None  # both hub ports over TLS (None: plaintext)
    metrics: str | None = None  # HOST:PORT for /metrics and /healthz
    attributes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    service: str | None = None  # QuotaSpecs bound to it are asked for
    namespace: str | None = None
    quotaspec_interval: float = 30.0
    upstream_connect_timeout: float = 10.0
    gate: GateOptions = dataclasses.field(default_factory=GateOptions)

    def __post_init__(self) -> None:
        if not self.upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream {self.upstream!r} must be an http:// or https:// URL")

    def quotaspec_target(self) -> tuple[str, str | None] | None:
        """(service, namespace) whose QuotaSpecs apply: --service; the namespace from
        --namespace or the ``destination.namespace`` attribute."""
        if not self.service:
            return None
        namespace = self.namespace or self.attributes.get("destination.namespace")
        return self.service, str(namespace) if namespace else None

    def hub_http_address(self) -> str:
        return self.hub_http or default_hub_http(self.hub)


class ReverseProxy:
    def __init__(self, config: ProxyConfig, metrics: ProxyMetrics | None = None,
                 log: Any = None, gate: Gate | None = None) -> None:
        self.config = config
        self.metrics = metrics or ProxyMetrics()
        self.log = log or get_logger("mixerhub.proxy")
        self.gate = gate or Gate.connect(config.hub, config.gate, self.metrics, self.log,
                                         config.hub_tls)
        self.static = dict(config.attributes)
        if config.service and "destination.service.name" not in self.static:
            self.static["destination.service.name"] = config.service
        target = config.quotaspec_target()
        self.specs = QuotaSpecSource(config.hub_http_address(), *target,
                                     interval=config.quotaspec_interval, metrics=self.metrics,
                                     log=self.log, tls=config.hub_tls) if target else None
        if self.specs is not None:
            self.gate.tls_listeners.append(self.specs.use_tls)
        self.upstream = config.upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None
        self._runners: list[web.BaseRunner] = []
        self.port = 0
        self.metrics_port = 0

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.gate.start()
        if self.specs is not None:
            await self.specs.start()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1024, keepalive_timeout=30),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, skip_auto_headers=("User-Agent", "Accept",
                                                      "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None,
                                          sock_connect=self.config.upstream_connect_timeout))
        self.port = await self._serve(web.ServerRunner(web.Server(self.handle)),
                                      self.config.listen)
        if self.config.metrics:
            self.metrics_port = await self._serve(web.AppRunner(self._metrics_app(),
                                                                access_log=None),
                                                  self.config.metrics)
        self.log.info("proxy serving", port=self.port, upstream=self.upstream,
                      hub=self.config.hub, hub_tls=_tls_mode(self.config.hub_tls),
                      metrics_port=self.metrics_port or None,
                      fail_policy="open" if self.config.gate.fail_open else "closed")

    async def _serve(self, runner: web.BaseRunner, address: str) -> int:
        from mixerhub.app import split_hostport

        host, port = split_hostport(address)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes no bound port otherwise
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    def _metrics_app(self) -> web.Application:
        async def metrics_page(request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.metrics.registry),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_get("/metrics", metrics_page)
        app.router.add_get("/healthz", healthz)
        return app

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self.specs is not None:
            await self.specs.close()
        if self.session is not None:
            await self.session.close()
        await self.gate.close()
        self.log.info("proxy stopped")

    # -- one request ---------------------------------------------------------------------

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        upstream_headers = end_to_end(request.headers.items())
        rid = request_id(upstream_headers)
        seen = header_map(request.headers.items())
        seen.setdefault("x-request-id", rid)
        values = request_values(method=request.method, scheme=request.scheme,
                                path=request.raw_path, headers=seen, peer=_peer(request),
                                request_id=rid, static=self.static)
        quotas = self.specs.requests(values) if self.specs is not None else None
        decision = await self.gate.check(values, quotas)
        exchange = Exchange()
        try:
            return await self._answer(request, decision, upstream_headers, exchange)
        finally:
            self.gate.report(report_record(values, decision, exchange,
                                           time.perf_counter() - started))

    async def _answer(self, request: web.BaseRequest, decision: Decision,
                      headers: Any, exchange: Exchange) -> web.StreamResponse:
        verdict = decision.verdict
        if not decision.allowed:
            return _local(exchange, decision.http_status, decision.message, ())
        if verdict is not None and verdict.direct_response_code:
            return _local(exchange, verdict.direct_response_code, verdict.direct_response_body,
                          verdict.response_header_ops)
        if verdict is not None:
            apply_ops(headers, verdict.request_header_ops)
        return await self._forward(request, headers, decision, exchange)

    async def _forward(self, request: web.BaseRequest, headers: Any, decision: Decision,
                       exchange: Exchange) -> web.StreamResponse:
        assert self.session is not None, "start() first"
        peer = _peer(request)
        forward(headers, peer[0] if peer else None, request.scheme, request.host)
        for name in _NOT_FORWARDED:
            headers.popall(name, None)
        if request.headers.get("expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # allowed: send it
        body = _counted(request, exchange) if request.body_exists else None
        url = URL(self.upstream + request.raw_path, encoded=True)
        try:
            upstream = await self.session.request(request.method, url, headers=headers,
                                                  data=body, allow_redirects=False)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            return self._upstream_failed(exchange, exc)
        try:
            return await self._relay(request, upstream, decision, exchange)
        finally:
            upstream.release()

    async def _relay(self, request: web.BaseRequest, upstream: aiohttp.ClientResponse,
                     decision: Decision, exchange: Exchange) -> web.StreamResponse:
        headers = end_to_end(upstream.headers.items())
        if decision.verdict is not None:
            apply_ops(headers, decision.verdict.response_header_ops)
        exchange.code = upstream.status
        exchange.response_headers = header_map(headers.items())
        if _small(upstream, request.method):  # one write for head and body
            body = await upstream.read()
            exchange.body_size = len(body)
            return web.Response(status=upstream.status, reason=upstream.reason,
                                headers=headers, body=body)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                      headers=headers)
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_chunked(_CHUNK):
                exchange.body_size += len(chunk)
                await response.write(chunk)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            self.metrics.upstream_errors.labels("reset").inc()
            raise ConnectionResetError("the upstream broke off the response") from None
        await response.write_eof()
        return response

    def _upstream_failed(self, exchange: Exchange, exc: BaseException) -> web.Response:
        timeout = isinstance(exc, asyncio.TimeoutError)
        self.metrics.upstream_errors.labels("timeout" if timeout else "connect").inc()
        self.log.warning("upstream failed", upstream=self.upstream,
                         error=str(exc) or type(exc).__name__)
        return _local(exchange, 504 if timeout else 502,
                      "upstream timed out" if timeout else "upstream unreachable", ())


def _tls_mode(tls: HubTls | None) -> str:
    return "off" if tls is None else "mutual" if tls.mutual else "on"


def _small(upstream: aiohttp.ClientResponse, method: str) -> bool:
    """A body with a known length of at most one chunk: relayed whole, not streamed."""
    length = upstream.headers.get("content-length", "")
    return method != "HEAD" and length.isdigit() and int(length) <= _CHUNK


def _local(exchange: Exchange, status: int, body: str, ops: Any) -> web.Response:
    """An answer made here (denial, direct response, upstream failure)."""
    response = web.Response(status=status, text=body, content_type="text/plain")
    apply_ops(response.headers, ops)
    exchange.code = status
    exchange.body_size = len(response.body or b"")  # type: ignore[arg-type]
    exchange.response_headers = header_map(response.headers.items())
    return response


async def _counted(request: web.BaseRequest, exchange: Exchange) -> AsyncIterator[bytes]:
    exchange.request_size = 0
    async for chunk in request.content.iter_chunked(_CHUNK):
        exchange.request_size += len(chunk)
        yield chunk


def _peer(request: web.BaseRequest) -> tuple[str, int] | None:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return (peer[0], peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else None


async def serve_proxy(config: ProxyConfig, started: asyncio.Event | None = None) -> None:
    """Run a proxy until SIGTERM or SIGINT, then flush reports and stop."""
    proxy = ReverseProxy(config)
    await proxy.start()
    if started is not None:
        started.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.stop()
