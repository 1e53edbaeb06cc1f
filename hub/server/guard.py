"""The one place a gRPC handler's exceptions become status codes, counted and logged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from mixerhub.errors import MixerhubError, WireError
from mixerhub.metrics import Metrics
from mixerhub.server.shedding import Shedder

RawHandler = Callable[[bytes], Awaitable[bytes]]


def guarded(service: str, method: str, fn: RawHandler, metrics: Metrics, log: Any,
            on_error: Callable[[], None] | None = None, shedder: Shedder | None = None
            ) -> Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]:
    """``fn`` as a grpc.aio handler: our errors carry their status (a bad request is
    INVALID_ARGUMENT and counted in ``mixerhub_bad_requests_total``), anything else is
    INTERNAL with the traceback logged. ``on_error`` counts the failure (e.g. a check
    answered with an error). A check-type method passes the hub's ``shedder``: past its
    bounds the call is UNAVAILABLE at once (counted in ``mixerhub_shed_total``)."""
    bad = metrics.bad_requests.labels(service, method)

    async def call(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            return await fn(raw)
        except MixerhubError as exc:
            if on_error is not None:
                on_error()
            if exc.grpc_status is grpc.StatusCode.INVALID_ARGUMENT:
                bad.inc()
            log.info("request rejected", method=method, code=exc.code, error=str(exc))
            await context.abort(exc.grpc_status, str(exc))
            raise  # abort raises; keeps type checkers honest
        except Exception:
            if on_error is not None:
                on_error()
            log.exception("request failed", method=method)
            await context.abort(grpc.StatusCode.INTERNAL, f"{method} failed inside the hub")
            raise
    if shedder is None or not shedder.enabled:
        return call

    async def shed_or_call(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        refusal = shedder.enter()
        if refusal is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, refusal)
        try:
            return await call(raw, context)
        finally:
            shedder.leave()
    return shed_or_call


def unary(service: str,
          methods: dict[str, Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]],
                                      Awaitable[bytes]]]
          ) -> grpc.GenericRpcHandler:
    """A generic handler of raw-bytes unary methods (we parse, so bad protobuf is ours)."""
    return grpc.method_handlers_generic_handler(
        service, {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in methods.items()})


def parse(message_type: Any, raw: bytes) -> Any:
    """Raw request bytes as ``message_type``; bad protobuf is a WireError (INVALID_ARGUMENT)."""
    try:
        return message_type.FromString(raw)
    except DecodeError as exc:
        raise WireError(f"{message_type.DESCRIPTOR.name} is not valid protobuf: {exc}") from None
