"""The WSGI flavour of :mod:`mixerhub.proxy_filter.asgi`, for synchronous apps::

    app = MixerWSGIMiddleware(app, hub="127.0.0.1:9091")

The client is asynchronous (grpc.aio), so it runs on its own event loop in one background
thread; a request thread waits for its check there (the cache makes most waits short) and
hands its report over without waiting. Call :meth:`MixerWSGIMiddleware.close` at exit to
flush reports. Request sizes come from Content-Length.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import quote

from multidict import CIMultiDict

from mixerhub.proxy_filter.attributes import Exchange, header_map, report_record, request_values
from mixerhub.proxy_filter.gate import Decision, Gate, GateOptions
from mixerhub.proxy_filter.headers import apply_ops
from mixerhub.proxy_filter.metrics import ProxyMetrics
from mixerhub.proxy_filter.mixer_client import HubTls
from mixerhub.proxy_filter.quotaspecs import QuotaSpecSource, default_hub_http
from mixerhub.verdict import HeaderOp

T = TypeVar("T")
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
_SPECIAL = {"CONTENT_TYPE": "content-type", "CONTENT_LENGTH": "content-length"}


class MixerWSGIMiddleware:
    def __init__(self, app: WSGIApp, *, hub: str = "127.0.0.1:9091",
                 attributes: Mapping[str, Any] | None = None,
                 options: GateOptions | None = None, service: str | None = None,
                 namespace: str | None = None, hub_http: str | None = None,
                 metrics: ProxyMetrics | None = None, tls: HubTls | None = None) -> None:
        self.app = app
        self.static = dict(attributes or {})
        self.metrics = metrics or ProxyMetrics()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="mixerhub-client")
        self._thread.start()
        self.gate: Gate = self._run(self._connect(hub, options or GateOptions(), tls))
        self.specs = QuotaSpecSource(hub_http or default_hub_http(hub), service, namespace,
                                     metrics=self.metrics, tls=tls) if service else None
        if self.specs is not None:
            self._run(self.specs.start())

    async def _connect(self, hub: str, options: GateOptions, tls: HubTls | None) -> Gate:
        gate = Gate.connect(hub, options, self.metrics, tls=tls)
        await gate.start()
        return gate

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        """Flush reports, disconnect, stop the client's thread."""
        if self.specs is not None:
            self._run(self.specs.close())
        self._run(self.gate.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        started = time.perf_counter()
        seen = header_map(_headers(environ))
        rid = seen.get("x-request-id") or _new_id()
        environ.setdefault("HTTP_X_REQUEST_ID", rid)
        seen.setdefault("x-request-id", rid)
        values = request_values(method=environ["REQUEST_METHOD"],
                                scheme=environ.get("wsgi.url_scheme", "http"),
                                path=_path(environ), headers=seen, peer=_peer(environ),
                                request_id=rid, static=self.static)
        quotas = self.specs.requests(values) if self.specs is not None else None
        decision = self._run(self.gate.check(values, quotas))
        exchange = Exchange()

        def report() -> None:
            record = report_record(values, decision, exchange, time.perf_counter() - started)
            self._loop.call_soon_threadsafe(self.gate.report, record)

        return self._answer(environ, start_response, decision, exchange, report)

    def _answer(self, environ: dict[str, Any], start_response: StartResponse,
                decision: Decision, exchange: Exchange, report: Callable[[], None]
                ) -> Iterable[bytes]:
        verdict = decision.verdict
        if not decision.allowed:
            return _Reported(_local(start_response, decision.http_status, decision.message,
                                    exchange), exchange, report)
        if verdict is not None and verdict.direct_response_code:
            return _Reported(_local(start_response, verdict.direct_response_code,
                                    verdict.direct_response_body, exchange), exchange, report)
        if verdict is not None:
            _apply_to_environ(environ, verdict.request_header_ops)
        ops = verdict.response_header_ops if verdict is not None else ()

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            out: CIMultiDict[str] = CIMultiDict(headers)
            apply_ops(out, ops)
            exchange.code = int(status.split(" ", 1)[0])
            exchange.response_headers = header_map(out.items())
            return start_response(status, [(str(k), v) for k, v in out.items()], exc_info)

        return _Reported(self.app(environ, start), exchange, report)


class _Reported:
    """The app's body, counted; the report goes when the server closes it."""

    def __init__(self, body: Iterable[bytes], exchange: Exchange,
                 report: Callable[[], None]) -> None:
        self._body, self._exchange, self._report = body, exchange, report

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._exchange.body_size += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._report()


def _headers(environ: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-").lower(), value
        elif key in _SPECIAL and value:
            yield _SPECIAL[key], value


def _environ_key(name: str) -> str:
    upper = name.upper().replace("-", "_")
    return upper if upper in _SPECIAL else f"HTTP_{upper}"


def _apply_to_environ(environ: dict[str, Any], ops: Iterable[HeaderOp]) -> None:
    headers: CIMultiDict[str] = CIMultiDict(_headers(environ))
    apply_ops(headers, ops)
    for op in ops:
        key = _environ_key(op.name)
        values = headers.getall(op.name, [])
        if values:
            environ[key] = ",".join(values)
        else:
            environ.pop(key, None)


def _path(environ: Mapping[str, Any]) -> str:
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
                 safe="/;=,:@!$&'()*+~")
    query = environ.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path


def _peer(environ: Mapping[str, Any]) -> tuple[str, int] | None:
    addr, port = environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT")
    return (str(addr), int(str(port))) if addr and str(port or "").isdigit() else None


def _local(start_response: StartResponse, status: int, text: str, exchange: Exchange
           ) -> list[bytes]:
    body = text.encode()
    headers = [("content-type", "text/plain; charset=utf-8"),
               ("content-length", str(len(body)))]
    exchange.code = status
    exchange.response_headers = dict(headers)
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    start_response(f"{status} {phrase}".rstrip(), headers)
    return [body]


def _new_id() -> str:
    import uuid

    return str(uuid.uuid4())
