"""The HTTP port: /metrics, /healthz, /readyz, /debug/config, /debug/plugins, and the
routes other parts install (``/v1/check``, ``/v1/quotaspecs``); and the plain admin port
(``serve --admin``): the probes and /metrics without TLS.

``/debug/*`` is served only on listeners bound to a loopback address unless
``serve --debug-public`` says otherwise (:func:`debug_allowed`); that includes the
routes given as ``debug_routes`` (the live page ``/debug/``, hub/server/debugpage.py)."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mixerhub.metrics import Metrics


def build_app(metrics: Metrics, ready: Callable[[], bool],
              config: Callable[[], dict[str, Any]] | None = None,
              plugins: Callable[[], list[dict[str, Any]]] | None = None,
              routes: Sequence[Callable[[web.Application], None]] = (), *,
              debug: bool = True, middlewares: Sequence[Any] = (),
              debug_routes: Sequence[Callable[[web.Application], None]] = ()
              ) -> web.Application:
    """The admin app; each of ``routes`` adds its own endpoints (``/v1/check`` …), each
    of ``debug_routes`` its ``/debug/…`` ones; ``debug`` False leaves out ``/debug/*``."""

    async def metrics_page(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    async def debug_config(request: web.Request) -> web.Response:
        return web.json_response(config() if config else {}, dumps=_dumps)

    async def debug_plugins(request: web.Request) -> web.Response:
        return web.json_response(plugins() if plugins else [], dumps=_dumps)

    app = web.Application(middlewares=list(middlewares))
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if debug:
        app.router.add_get("/debug/config", debug_config)
        app.router.add_get("/debug/plugins", debug_plugins)
        for install in debug_routes:
            install(app)
    for install in routes:
        install(app)
    return app


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, default=str)


def debug_allowed(host: str, public: bool) -> bool:
    """Whether ``/debug/*`` is served on a listener bound to ``host``."""
    if public:
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpServer:
    def __init__(self, app: web.Application, host: str, port: int,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._host, self._port = host, port
        self._ssl = ssl_context
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True,
                           ssl_context=self._ssl)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self._runner.cleanup()
