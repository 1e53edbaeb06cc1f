"""``POST /v1/check`` on the HTTP port: a check in the JSON form (DESIGN §10).

Request: ``{"attributes": {...}, "quotas": {"name": {"amount": 1, "best_effort": false}},
"deduplication_id": "..."}`` (only ``attributes`` is required). Without ``quotas`` the
hub charges the default quotas, as for Envoy's ext_authz (DESIGN §5).

Two reply forms, chosen by the request's ``Accept`` header:

* JSON (default): :func:`mixerhub.jsonform.verdict_to_json`.
* ``text/x-mixerhub-verdict``: tab-separated lines a Lua filter reads with one pattern
  and no JSON parser (docs/envoy.md): ``code``, ``http``, ``duration_ms``, ``uses``,
  ``cache`` (1 when a proxy may reuse the verdict), ``ref`` (``[-]NAME`` or
  ``[-]NAME<TAB>KEY``), ``req``/``resp`` header operations (``set``/``append``/
  ``remove``, name, value), ``hdr`` (headers of a denial, e.g. ``retry-after``), and last
  ``body`` followed by the body to send on a denial.

The HTTP status of the reply is 200 whatever the verdict (the verdict's own status is
inside); 400 means the request itself was malformed; 503 that the hub shed the check
(overloaded, docs/operations.md), so the caller's fail policy applies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from mixerhub.attributes.bag import AttributeBag, Reference
from mixerhub.attributes.types import Manifest
from mixerhub.envoy.authz import rate_limit_headers
from mixerhub.errors import MixerhubError, WireError
from mixerhub.jsonform import values_from_json, verdict_to_json
from mixerhub.metrics import Metrics
from mixerhub.policy import Policy
from mixerhub.server.shedding import Shedder
from mixerhub.tracing import CHECK_SPAN, Tracing
from mixerhub.verdict import CheckOutcome, HeaderOperation, QuotaRequest, http_status

LINES_TYPE = "text/x-mixerhub-verdict"
_OPS = {HeaderOperation.REPLACE: "set", HeaderOperation.APPEND: "append",
        HeaderOperation.REMOVE: "remove"}


class CheckApi:
    """The route installer and handler of ``/v1/check``."""

    def __init__(self, policy: Callable[[], Policy], manifest: Callable[[], Manifest],
                 metrics: Metrics, log: Any, shedder: Shedder | None = None,
                 tracing: Tracing | None = None) -> None:
        self._policy = policy
        self._tracing = tracing
        self._shedder = shedder if shedder is not None and shedder.enabled else None
        self._manifest = manifest
        self._log = log
        self._ok = metrics.checks.labels("http", "ok")
        self._denied = metrics.checks.labels("http", "denied")
        self._error = metrics.checks.labels("http", "error")
        self._time = metrics.check_duration.labels("http")
        self._bad = metrics.bad_requests.labels("http", "check")

    def install(self, app: web.Application) -> None:
        handle = self.handle if self._tracing is None \
            else self._tracing.wrap_http(CHECK_SPAN, "http", self.handle)
        app.router.add_post("/v1/check", handle)

    async def handle(self, request: web.Request) -> web.Response:
        if self._shedder is None:
            return await self._handle(request)
        refusal = self._shedder.enter()
        if refusal is not None:  # the caller's fail policy decides (Lua: non-200)
            return web.json_response({"error": refusal, "code": "overloaded"}, status=503)
        try:
            return await self._handle(request)
        finally:
            self._shedder.leave()

    async def _handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            outcome, extra = await self._check(await request.read())
        except MixerhubError as exc:
            self._error.inc()
            self._bad.inc()
            return web.json_response({"error": str(exc), "code": exc.code}, status=400)
        if self._tracing is not None:
            self._tracing.check_outcome(outcome)
        (self._ok if outcome.verdict.ok else self._denied).inc()
        self._time.observe(time.perf_counter() - started)
        if LINES_TYPE in request.headers.get("Accept", ""):
            return web.Response(text=verdict_lines(outcome, extra), content_type=LINES_TYPE)
        body = verdict_to_json(outcome)
        if extra:
            body["referenced"] = sorted({*body["referenced"], *(r.notation() for r in extra)})
        return web.json_response(body)

    async def _check(self, raw: bytes) -> tuple[CheckOutcome, list[Reference]]:
        payload = _payload(raw)
        bag = AttributeBag(values_from_json(payload["attributes"], self._manifest()))
        policy = self._policy()
        quotas = _quotas(payload.get("quotas"))
        extra: list[Reference] = []
        if quotas is None:
            quotas = policy.default_quotas(bag)
            extra = [] if quotas else bag.references()
        dedup = payload.get("deduplication_id") or bag.values.get("request.id", "")
        outcome = await policy.check(bag, quotas, str(dedup))
        return outcome, extra


def _payload(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise WireError(f"request body is not JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("attributes"), dict):
        raise WireError('request body must be a JSON object with an "attributes" object')
    return payload


def _quotas(spec: Any) -> dict[str, QuotaRequest] | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise WireError('"quotas" must be an object of {"amount": N, "best_effort": bool}')
    out = {}
    for name, q in spec.items():
        amount = q.get("amount", 1) if isinstance(q, dict) else None
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise WireError(f"quotas[{name!r}].amount must be a non-negative integer")
        out[name] = QuotaRequest(amount, bool(q.get("best_effort", False)))
    return out


def verdict_lines(outcome: CheckOutcome, extra: Iterable[Reference] = ()) -> str:
    """The ``text/x-mixerhub-verdict`` form (see the module doc)."""
    v = outcome.verdict
    charged = any(g.granted_amount or g.code for g in outcome.quotas.values())
    cache = not charged and v.valid_use_count > 0 and v.valid_duration.total_seconds() > 0
    status = v.direct_response_code or http_status(v.code)
    lines = [f"code\t{v.code}", f"http\t{status}",
             f"duration_ms\t{int(v.valid_duration.total_seconds() * 1000)}",
             f"uses\t{v.valid_use_count}", f"cache\t{int(cache)}"]
    lines += [_ref_line(r) for r in dict.fromkeys((*v.references, *extra))]
    lines += _op_lines("req", v.request_header_ops) + _op_lines("resp", v.response_header_ops)
    if not v.ok:
        headers = {"content-type": "text/plain"}
        if status == 429:
            headers.update(rate_limit_headers(outcome.quotas.values()))
        lines += [f"hdr\t{name}\t{_clean(value)}" for name, value in headers.items()]
    body = v.direct_response_body or (v.message if not v.ok else "")
    return "\n".join(lines) + "\nbody\t" + body


def _ref_line(ref: Reference) -> str:
    sign = "" if ref.present else "-"
    key = "" if ref.map_key is None else "\t" + _clean(ref.map_key)
    return f"ref\t{sign}{ref.name}{key}"


def _op_lines(side: str, ops: Iterable[Any]) -> list[str]:
    return [f"{side}\t{_OPS[op.operation]}\t{op.name}\t{_clean(op.value)}" for op in ops]


def _clean(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")
