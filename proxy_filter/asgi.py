"""An ASGI middleware doing in process what ``mixerhub proxy`` does in front of an app::

    app = MixerMiddleware(app, hub="127.0.0.1:9091",
                          attributes={"destination.service.name": "books"})

Each HTTP request is checked before the app sees it (a denial is answered here with the
mapped status and the message; the fail policy applies when the hub cannot answer), gets
the rule's request header operations, and its response gets the response header
operations; its report (status, sizes, duration) is batched to the hub after. Other scope
types pass through. The client starts on lifespan startup or on the first request and
flushes its reports on lifespan shutdown (or :meth:`MixerMiddleware.close`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from multidict import CIMultiDict

from mixerhub.proxy_filter.attributes import Exchange, header_map, report_record, request_values
from mixerhub.proxy_filter.gate import Decision, Gate, GateOptions
from mixerhub.proxy_filter.headers import apply_ops, request_id
from mixerhub.proxy_filter.metrics import ProxyMetrics
from mixerhub.proxy_filter.mixer_client import HubTls
from mixerhub.proxy_filter.quotaspecs import QuotaSpecSource, default_hub_http

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class MixerMiddleware:
    def __init__(self, app: ASGIApp, *, hub: str = "127.0.0.1:9091",
                 attributes: Mapping[str, Any] | None = None,
                 options: GateOptions | None = None, service: str | None = None,
                 namespace: str | None = None, hub_http: str | None = None,
                 metrics: ProxyMetrics | None = None, gate: Gate | None = None,
                 tls: HubTls | None = None) -> None:
        self.app = app
        self.hub = hub
        self.tls = tls
        self.static = dict(attributes or {})
        self.options = options or GateOptions()
        self.metrics = metrics or ProxyMetrics()
        self.gate = gate
        self.specs = QuotaSpecSource(hub_http or default_hub_http(hub), service, namespace,
                                     metrics=self.metrics, tls=tls) if service else None
        self._started: asyncio.Future[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
        elif scope["type"] == "http":
            await self.start()
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def start(self) -> None:
        """Connect to the hub (once; in the server's event loop)."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            if self.gate is None:
                self.gate = Gate.connect(self.hub, self.options, self.metrics, tls=self.tls)
            await self.gate.start()
            if self.specs is not None:
                await self.specs.start()
            self._started.set_result(None)
        await self._started

    async def close(self) -> None:
        """Flush reports and disconnect."""
        if self.specs is not None:
            await self.specs.close()
        if self.gate is not None and self._started is not None:
            await self.gate.close()
            self._started = None

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await self.start()
            elif message["type"] == "lifespan.shutdown.complete":
                await self.close()
            await send(message)
        return wrapped

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.gate is not None
        started = time.perf_counter()
        raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        headers: CIMultiDict[str] = CIMultiDict(raw)
        rid = request_id(headers)
        seen = header_map(raw)
        seen.setdefault("x-request-id", rid)
        values = request_values(method=scope["method"], scheme=scope.get("scheme", "http"),
                                path=_path(scope), headers=seen, peer=_peer(scope),
                                request_id=rid, static=self.static)
        quotas = self.specs.requests(values) if self.specs is not None else None
        decision = await self.gate.check(values, quotas)
        exchange = Exchange()
        try:
            await self._answer(scope, receive, send, decision, headers, exchange)
        finally:
            self.gate.report(report_record(values, decision, exchange,
                                           time.perf_counter() - started))

    async def _answer(self, scope: Scope, receive: Receive, send: Send, decision: Decision,
                      headers: CIMultiDict[str], exchange: Exchange) -> None:
        verdict = decision.verdict
        if not decision.allowed:
            await _local(send, decision.http_status, decision.message, exchange)
        elif verdict is not None and verdict.direct_response_code:
            await _local(send, verdict.direct_response_code, verdict.direct_response_body,
                         exchange)
        else:
            if verdict is not None:
                apply_ops(headers, verdict.request_header_ops)
            scope = {**scope, "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                                          for k, v in headers.items()]}
            await self.app(scope, _counting(receive, exchange),
                           _responding(send, decision, exchange))


def _path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope.get("path", "/")
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def _peer(scope: Scope) -> tuple[str, int] | None:
    client = scope.get("client")
    return (str(client[0]), int(client[1])) if client else None


def _counting(receive: Receive, exchange: Exchange) -> Receive:
    exchange.request_size = 0

    async def wrapped() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            exchange.request_size = (exchange.request_size or 0) + len(message.get("body", b""))
        return message
    return wrapped


def _responding(send: Send, decision: Decision, exchange: Exchange) -> Send:
    ops = decision.verdict.response_header_ops if decision.verdict is not None else ()

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers: CIMultiDict[str] = CIMultiDict(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in message["headers"])
            apply_ops(headers, ops)
            exchange.code = int(message["status"])
            exchange.response_headers = header_map(headers.items())
            message = {**message, "headers": [(k.lower().encode("latin-1"),
                                               v.encode("latin-1")) for k, v in headers.items()]}
        elif message["type"] == "http.response.body":
            exchange.body_size += len(message.get("body", b""))
        await send(message)
    return wrapped


async def _local(send: Send, status: int, text: str, exchange: Exchange) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"),
               (b"content-length", str(len(body)).encode())]
    exchange.code, exchange.body_size = status, len(body)
    exchange.response_headers = {k.decode(): v.decode() for k, v in headers}
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
