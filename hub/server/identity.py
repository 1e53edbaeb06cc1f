"""The caller's certificate identity as ``context.reporter.principal`` (mTLS only).

With a client CA, gRPC and the HTTP API note the verified identity of each call's peer —
its first URI SAN (a SPIFFE id, say), else its subject CN — in a context variable, and
:class:`PrincipalPolicy` writes it into every bag the wire services hand the policy. The
value a client may have sent itself is replaced (or removed when no identity is known):
under mTLS the attribute only ever comes from a verified certificate, so rules can rely
on it. Without mTLS none of this is installed and the attribute is whatever the client
sent.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from aiohttp import web

from mixerhub.attributes.bag import AttributeBag
from mixerhub.policy import Policy
from mixerhub.verdict import CheckOutcome, QuotaGrant, QuotaRequest

ATTRIBUTE = "context.reporter.principal"
PEER_PRINCIPAL: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mixerhub_peer_principal", default=None)


def grpc_principal(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The verified identity of a gRPC call's peer (URI SAN, else CN)."""
    auth = context.auth_context()
    for key in ("peer_uri", "x509_common_name"):
        values = auth.get(key)
        if values:
            # a list at run time; the stub's Iterable[bytes] is too loose to index
            return bytes(values[0]).decode("utf-8", "replace")  # type: ignore[index]
    return None


def ssl_principal(peercert: Mapping[str, Any] | None) -> str | None:
    """The identity in ``SSLObject.getpeercert()``'s dict (URI SAN, else CN)."""
    if not peercert:
        return None
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "URI":
            return str(value)
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class PrincipalInterceptor(grpc.aio.ServerInterceptor):
    """Sets :data:`PEER_PRINCIPAL` for the unary and client-streaming calls (Check,
    Report, ext_authz, access logs, rate limits) before their handler runs."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = _with_principal(handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _with_principal(handler: Any) -> Any:
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            PEER_PRINCIPAL.set(grpc_principal(context))
            return await inner(request, context)
        return handler._replace(unary_unary=unary)
    if handler.stream_unary is not None:
        inner_stream = handler.stream_unary

        async def stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            PEER_PRINCIPAL.set(grpc_principal(context))
            return await inner_stream(requests, context)
        return handler._replace(stream_unary=stream)
    return handler  # server-streaming (health Watch, reflection): no policy behind them


@web.middleware
async def principal_middleware(request: web.Request,
                               handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                               ) -> web.StreamResponse:
    """The HTTP API's counterpart of :class:`PrincipalInterceptor`."""
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    PEER_PRINCIPAL.set(ssl_principal(peercert))
    return await handler(request)


def _stamp(bag: AttributeBag) -> None:
    principal = PEER_PRINCIPAL.get()
    if principal is None:
        bag.values.pop(ATTRIBUTE, None)
    else:
        bag.values[ATTRIBUTE] = principal


class PrincipalPolicy:
    """The hub's current policy, with every bag stamped with the caller's identity."""

    def __init__(self, current: Callable[[], Policy]) -> None:
        self._current = current

    async def check(self, bag: AttributeBag, quotas: Mapping[str, QuotaRequest],
                    dedup_id: str) -> CheckOutcome:
        _stamp(bag)
        return await self._current().check(bag, quotas, dedup_id)

    async def report(self, bags: Sequence[AttributeBag]) -> None:
        for bag in bags:
            _stamp(bag)
        await self._current().report(bags)

    async def allocate(self, bag: AttributeBag, quotas: Mapping[str, QuotaRequest],
                       dedup_id: str) -> dict[str, QuotaGrant]:
        _stamp(bag)
        return await self._current().allocate(bag, quotas, dedup_id)

    def default_quotas(self, bag: AttributeBag) -> dict[str, QuotaRequest]:
        _stamp(bag)
        return self._current().default_quotas(bag)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current(), name)
