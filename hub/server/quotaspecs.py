"""``GET /v1/quotaspecs?service=NAME[&namespace=NS]``: the QuotaSpec rules bound to a service.

Mixer clients (the Python proxy) fetch these on start and on an interval and ask for the
quotas in their Checks. The body (docs/proxy.md)::

    {"service": "reviews", "namespace": "default", "bound": true, "version": 3,
     "specs": [{"name": "request-count.istio-system",
                "rules": [{"match": [{"clause": {"request.path": {"prefix": "/api"}}}],
                           "quotas": [{"quota": "requestcountquota", "charge": 1}]}]}]}

``bound`` says whether the config holds any QuotaSpec; ``version`` is the config snapshot's
(0 without config), so a client can tell a change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mixerhub.quotaspec import QuotaSpecIndex

if TYPE_CHECKING:
    from mixerhub.config.snapshot import Snapshot


class _Indexes:
    """One QuotaSpecIndex per snapshot, built on first use."""

    def __init__(self, snapshot: Callable[[], Snapshot | None]) -> None:
        self._snapshot = snapshot
        self._current: tuple[int, QuotaSpecIndex] | None = None

    def __call__(self) -> tuple[int, QuotaSpecIndex | None]:
        snapshot = self._snapshot()
        if snapshot is None:
            return 0, None
        if self._current is None or self._current[0] != snapshot.version:
            self._current = (snapshot.version, QuotaSpecIndex(snapshot.config))
        return self._current


def quotaspec_routes(snapshot: Callable[[], Snapshot | None]
                     ) -> Callable[[web.Application], None]:
    """A route installer for :func:`mixerhub.server.http.build_app`."""
    indexes = _Indexes(snapshot)

    async def quotaspecs(request: web.Request) -> web.Response:
        service = request.query.get("service", "")
        if not service:
            return web.json_response({"error": "the query parameter 'service' is required"},
                                     status=400)
        namespace = request.query.get("namespace") or None
        version, index = indexes()
        body: dict[str, Any]
        if index is None:
            body = {"service": service, "namespace": namespace, "bound": False, "specs": []}
        else:
            body = index.to_json(service, namespace)
        return web.json_response({**body, "version": version})

    def install(app: web.Application) -> None:
        app.router.add_get("/v1/quotaspecs", quotaspecs)

    return install
