"""``envoy.service.auth.v3.Authorization/Check``: Envoy's ext_authz filter asks the hub.

Allow → ``OkHttpResponse`` with the rules' header operations; deny → ``DeniedHttpResponse``
with the HTTP status of DESIGN §5 and the denial's message as body (a 429 also carries
``retry-after`` and ``x-ratelimit-*``); a failure inside the hub → a gRPC error, so Envoy's
own ``failure_mode_allow``/``status_on_error`` decide. Envoy names no quotas, so the hub
charges the default ones (``Policy.default_quotas``).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2

from mixerhub.attributes.bag import AttributeBag
from mixerhub.attributes.types import Manifest
from mixerhub.envoy.attributes import check_attributes
from mixerhub.metrics import Metrics
from mixerhub.policy import Policy
from mixerhub.server.guard import guarded, parse, unary
from mixerhub.server.shedding import Shedder
from mixerhub.tracing import CHECK_SPAN, Tracing
from mixerhub.verdict import CheckOutcome, HeaderOp, HeaderOperation, QuotaGrant, http_status

SERVICE_NAME = "envoy.service.auth.v3.Authorization"
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


class AuthorizationService:
    """Decodes ext_authz checks, asks the current policy, encodes Envoy's reply."""

    def __init__(self, policy: Callable[[], Policy], manifest: Callable[[], Manifest],
                 metrics: Metrics, log: Any, shedder: Shedder | None = None,
                 tracing: Tracing | None = None) -> None:
        self._policy = policy
        self._tracing = tracing
        self._manifest = manifest
        self._metrics = metrics
        self._shedder = shedder
        self._log = log
        self._ok = metrics.checks.labels("envoy", "ok")
        self._denied = metrics.checks.labels("envoy", "denied")
        self._error = metrics.checks.labels("envoy", "error")
        self._time = metrics.check_duration.labels("envoy")

    def handler(self) -> grpc.GenericRpcHandler:
        check = guarded("envoy", "Check", self.check, self._metrics, self._log,
                        self._error.inc, self._shedder)
        if self._tracing is not None:  # Envoy's own span of the call is in its metadata
            check = self._tracing.keep_metadata(check)
        return unary(SERVICE_NAME, {"Check": check})

    async def check(self, raw: bytes) -> bytes:
        started = time.perf_counter()
        request = parse(external_auth_pb2.CheckRequest, raw)
        if self._tracing is not None:
            headers = request.attributes.request.http.headers
            with self._tracing.server_span(CHECK_SPAN, "envoy",
                                           self._tracing.envoy_carrier(headers)):
                return await self._answer(request, started)
        return await self._answer(request, started)

    async def _answer(self, request: Any, started: float) -> bytes:
        bag = AttributeBag(check_attributes(request.attributes, self._manifest()))
        policy = self._policy()
        quotas = policy.default_quotas(bag)
        outcome = await policy.check(bag, quotas, bag.values.get("request.id", ""))
        reply = encode_check_response(outcome)
        if self._tracing is not None:
            self._tracing.check_outcome(outcome)
        (self._ok if outcome.verdict.ok else self._denied).inc()
        self._time.observe(time.perf_counter() - started)
        return cast(bytes, reply.SerializeToString())


def encode_check_response(outcome: CheckOutcome) -> Any:
    """A verdict as Envoy's ``CheckResponse``."""
    verdict = outcome.verdict
    response = external_auth_pb2.CheckResponse()
    response.status.code = verdict.code
    if verdict.ok:
        ok = response.ok_response
        ok.SetInParent()  # an allow says so even without header operations
        for op in verdict.request_header_ops:
            if op.operation is HeaderOperation.REMOVE:
                ok.headers_to_remove.append(op.name)
            else:
                _add_header(ok.headers, op)
        for op in verdict.response_header_ops:
            if op.operation is not HeaderOperation.REMOVE:  # Envoy has no field for it
                _add_header(ok.response_headers_to_add, op)
        return response
    response.status.message = verdict.message
    denied = response.denied_response
    denied.status.code = verdict.direct_response_code or http_status(verdict.code)
    denied.body = verdict.direct_response_body or verdict.message
    headers = {"content-type": "text/plain"}
    if denied.status.code == 429:
        headers.update(rate_limit_headers(outcome.quotas.values()))
    for name, value in headers.items():
        denied.headers.add(header=base_pb2.HeaderValue(key=name, value=value),
                           append_action=_OVERWRITE)
    return response


def _add_header(field: Any, op: HeaderOp) -> None:
    action = _APPEND if op.operation is HeaderOperation.APPEND else _OVERWRITE
    field.add(header=base_pb2.HeaderValue(key=op.name, value=op.value), append_action=action)


def rate_limit_headers(grants: Iterable[QuotaGrant]) -> Mapping[str, str]:
    """``retry-after`` and ``x-ratelimit-{limit,remaining,reset}`` of the exhausted quota
    that frees up last (whole seconds, at least 1, rounded up)."""
    exhausted = [g for g in grants if g.code != 0]
    if not exhausted:
        return {}
    grant = max(exhausted, key=_wait)
    wait = str(max(1, math.ceil(_wait(grant).total_seconds())))
    headers = {"retry-after": wait, "x-ratelimit-reset": wait}
    if grant.limit is not None:
        headers["x-ratelimit-limit"] = str(grant.limit)
        headers["x-ratelimit-remaining"] = str(grant.remaining or 0)
    return headers


def _wait(grant: QuotaGrant) -> dt.timedelta:
    return grant.reset if grant.reset is not None else grant.valid_duration
