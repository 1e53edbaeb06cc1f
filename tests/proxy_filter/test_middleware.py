"""The ASGI and WSGI middlewares with a real hub (tests/proxy_filter/data/policy.yaml).

The ASGI app is driven by the test as a server drives it (scope, receive, send; no ASGI
server is a dependency); the WSGI app runs under the standard library's wsgiref server.
"""

from __future__ import annotations

import asyncio
import json
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import aiohttp
import pytest

from mixerhub.proxy_filter.asgi import MixerMiddleware
from mixerhub.proxy_filter.wsgi import MixerWSGIMiddleware
from tests.proxy_filter.conftest import eventually


async def echo_app(scope, receive, send) -> None:
    """A tiny ASGI app: answers with the headers and body size it got."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                       "size": size}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def call(app, path: str, headers: dict[str, str] | None = None, body: bytes = b""
               ) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request through an ASGI app, as a server would make it."""
    raw_path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST" if body else "GET", "scheme": "http", "path": raw_path,
             "raw_path": raw_path.encode(), "query_string": query.encode(),
             "client": ("127.0.0.1", 50123), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"books.local"),
                         *((k.encode(), v.encode()) for k, v in (headers or {}).items())]}
    chunks = [{"type": "http.request", "body": body[i:i + 4], "more_body": i + 4 < len(body)}
              for i in range(0, max(len(body), 1), 4)]
    sent: list[dict] = []

    async def receive() -> dict:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return (start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
            b"".join(m.get("body", b"") for m in sent[1:]))


async def lifespan(app, phase: str) -> None:
    messages = [{"type": f"lifespan.{phase}"}]

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {}

    async def send(message: dict) -> None:
        assert message["type"] == f"lifespan.{phase}.complete"
        raise asyncio.CancelledError  # stop the app's lifespan loop once answered

    with pytest.raises(asyncio.CancelledError):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)


def reports(hub) -> float:
    return hub.metrics.registry.get_sample_value("mixerhub_reports_total",
                                                 {"source": "mixer"}) or 0.0


async def test_asgi_checks_applies_header_ops_and_reports(policy_hub) -> None:
    app = MixerMiddleware(echo_app, hub=f"127.0.0.1:{policy_hub.grpc.port}",
                          attributes={"destination.service.name": "books"})
    try:
        status, headers, body = await call(app, "/echo?x=1", {"x-user": "alice",
                                                               "x-debug": "1"}, b"123456789")
        assert status == 200 and headers["x-served-by"] == "mixerhub"
        seen = json.loads(body)
        assert seen["headers"]["x-authenticated-user"] == "alice"
        assert "x-debug" not in seen["headers"] and seen["size"] == 9
        status, _, body = await call(app, "/admin")
        assert (status, body) == (403, b"the admin API is closed")
        await app.gate.reports.flush()
        await eventually(lambda: reports(policy_hub) == 2)
    finally:
        await app.close()


async def test_asgi_quota_from_quota_specs_and_lifespan(policy_hub) -> None:
    app = MixerMiddleware(echo_app, hub=f"127.0.0.1:{policy_hub.grpc.port}",
                          hub_http=f"127.0.0.1:{policy_hub.http.port}", service="reviews",
                          namespace="default",
                          attributes={"destination.service.name": "reviews"})
    await lifespan(app, "startup")
    statuses = [(await call(app, "/api/x"))[0] for _ in range(103)]
    assert statuses.count(200) == 100 and statuses.count(429) == 3
    await lifespan(app, "shutdown")  # flushes the reports
    assert reports(policy_hub) == 103


async def test_asgi_hub_down_fail_policies() -> None:
    from mixerhub.proxy_filter.batcher import BatchOptions
    from mixerhub.proxy_filter.gate import GateOptions
    from tests.proxy_filter.conftest import free_port

    quick = BatchOptions(close_timeout=0.1)
    for fail_open, expected in ((False, 503), (True, 200)):
        app = MixerMiddleware(echo_app, hub=f"127.0.0.1:{free_port()}",
                              options=GateOptions(fail_open=fail_open, reports=quick))
        try:
            assert (await call(app, "/x"))[0] == expected
        finally:
            await app.close()


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def wsgi_app(environ, start_response):
    body = json.dumps({k: v for k, v in environ.items() if k.startswith("HTTP_")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


async def test_wsgi_under_a_real_server(policy_hub) -> None:
    middleware = await asyncio.to_thread(
        MixerWSGIMiddleware, wsgi_app, hub=f"127.0.0.1:{policy_hub.grpc.port}")
    server = make_server("127.0.0.1", 0, middleware, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/echo", headers={"x-user": "bob", "x-debug": "1"}) as r:
                assert r.status == 200 and r.headers["x-served-by"] == "mixerhub"
                environ = await r.json()
            async with s.get(f"{base}/private") as r:
                assert (r.status, await r.text()) == (401, "log in first")
        assert environ["HTTP_X_AUTHENTICATED_USER"] == "bob"
        assert "HTTP_X_DEBUG" not in environ and environ["HTTP_X_REQUEST_ID"]
    finally:
        server.shutdown()
        thread.join()
        await asyncio.to_thread(middleware.close)
    assert reports(policy_hub) == 2
