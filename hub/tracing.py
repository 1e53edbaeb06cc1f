"""OpenTelemetry tracing of checks and reports, exported over OTLP/gRPC (docs/tracing.md).

Off by default. Off means nothing: this module imports no OpenTelemetry at import time, the
hub holds ``None`` instead of a :class:`Tracing`, and the services keep their untraced
handlers. Only :func:`from_settings` with an endpoint imports the SDK.

On, every check is a ``mixerhub.check`` span and every report message a
``mixerhub.report`` span, continuing the caller's trace (W3C ``traceparent``; B3 headers
as a fallback); adapter calls are child spans; log lines written inside a span carry its
``trace_id`` and ``span_id``.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mixerhub import __version__
from mixerhub.logs import TraceIds, add_processor, get_logger

if TYPE_CHECKING:
    from aiohttp import web

    from mixerhub.policy import Policy
    from mixerhub.verdict import CheckOutcome

CHECK_SPAN = "mixerhub.check"
REPORT_SPAN = "mixerhub.report"
ADAPTER_SPAN = "mixerhub.adapter"  # + ".check", ".quota" or ".report"
SERVICE_NAME = "mixerhub"
SHUTDOWN_SECONDS = 5.0  # the longest the hub's exit waits for queued spans
GrpcHandler = Callable[[bytes, Any], Awaitable[bytes]]
HttpHandler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]
_TRACE_KEYS = ("traceparent", "b3", "x-b3-traceid")
#: The gRPC metadata of the call being handled, for handlers that find their carrier only
#: after parsing the request (Envoy's ext_authz); set by :meth:`Tracing.keep_metadata`.
_CALL_METADATA: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "mixerhub_call_metadata")


def from_settings(settings: Any) -> Tracing | None:
    """A :class:`Tracing` when the settings name an OTLP endpoint, else ``None``."""
    if not settings.otlp_endpoint:
        return None
    return Tracing(settings.otlp_endpoint, settings.trace_sample_ratio)


class Tracing:
    """The tracer provider of one hub, and the wrappers that put spans around its calls."""

    def __init__(self, endpoint: str, sample_ratio: float = 1.0, exporter: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        resource = Resource.create({"service.name": SERVICE_NAME,
                                    "service.version": __version__,
                                    "host.name": socket.gethostname()})
        # Our own provider, not the global one: the hub shuts it down itself, bounded.
        self._provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
                                        resource=resource, shutdown_on_exit=False)
        self._provider.add_span_processor(BatchSpanProcessor(exporter or _exporter(endpoint)))
        self._tracer = self._provider.get_tracer("mixerhub", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._current = trace.get_current_span
        self._server, self._internal = trace.SpanKind.SERVER, trace.SpanKind.INTERNAL
        self.endpoint = endpoint
        add_processor(TraceIds())  # before the hub binds its loggers
        self._log = get_logger("mixerhub.tracing")

    # -- spans -------------------------------------------------------------------------

    @contextmanager
    def server_span(self, name: str, source: str, carrier: Mapping[str, str] | None,
                    **attributes: Any) -> Iterator[Any]:
        """A current span for one call, child of the caller's span found in ``carrier``
        (headers or gRPC metadata); an exception marks it ``mixerhub.outcome=error``."""
        parent = self._extract(carrier) if carrier else None
        attributes["mixerhub.source"] = source
        with self._tracer.start_as_current_span(name, context=parent, kind=self._server,
                                                attributes=attributes) as span:
            try:
                yield span
            except BaseException:
                span.set_attribute("mixerhub.outcome", "error")
                raise

    def _extract(self, carrier: Mapping[str, str]) -> Any:
        if "traceparent" not in carrier:
            b3 = b3_traceparent(carrier)
            carrier = {"traceparent": b3} if b3 else {}
        return self._propagator.extract(carrier)

    def wrap_grpc(self, name: str, source: str, handler: GrpcHandler) -> GrpcHandler:
        """``handler`` (raw bytes, grpc.aio context) inside a span whose parent comes from
        the call's metadata; records the gRPC status of a call that ends in an error."""
        async def traced(raw: bytes, context: Any) -> bytes:
            with self.server_span(name, source, _metadata(context),
                                  **{"rpc.system": "grpc"}) as span:
                try:
                    return await handler(raw, context)
                except BaseException:
                    code = context.code()
                    span.set_attribute("rpc.grpc.status_code",
                                       code.value[0] if code is not None else 2)
                    raise
        return traced

    def keep_metadata(self, handler: GrpcHandler) -> GrpcHandler:
        """``handler`` with the call's gRPC metadata kept for :meth:`envoy_carrier`."""
        async def keeping(raw: bytes, context: Any) -> bytes:
            _CALL_METADATA.set(_metadata(context))
            return await handler(raw, context)
        return keeping

    def envoy_carrier(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """Where an ext_authz check's parent is: the call's own metadata when Envoy traced
        the call (its span of the ext_authz request), else the checked request's headers
        (the trace its client sent)."""
        metadata = _CALL_METADATA.get(None)
        if metadata and any(key in metadata for key in _TRACE_KEYS):
            return metadata
        return headers

    def wrap_http(self, name: str, source: str, handler: HttpHandler) -> HttpHandler:
        """An aiohttp handler inside a span whose parent comes from the request headers; a
        reply other than 200 (bad request, shed) is ``mixerhub.outcome=error``."""
        async def traced(request: web.Request) -> web.StreamResponse:
            with self.server_span(name, source, request.headers) as span:
                response = await handler(request)
                span.set_attribute("http.response.status_code", response.status)
                if response.status != 200:
                    span.set_attribute("mixerhub.outcome", "error")
                return response
        return traced

    def check_outcome(self, outcome: CheckOutcome) -> None:
        """Describe the check span in progress with its verdict (and log it at debug, so
        a traced check leaves a line that carries the trace id)."""
        verdict = outcome.verdict
        result = "ok" if verdict.ok else "denied"
        self._current().set_attributes({"mixerhub.outcome": result,
                                        "mixerhub.status_code": verdict.code,
                                        "mixerhub.rules_matched": len(verdict.rules)})
        self._log.debug("check answered", outcome=result, code=verdict.code,
                        rules=verdict.rules)

    def report_records(self, count: int) -> None:
        """The number of records of the report span in progress."""
        self._current().set_attribute("mixerhub.records", count)

    async def report(self, source: str, policy: Policy, bags: Sequence[Any]) -> None:
        """``policy.report(bags)`` inside a report span of its own (Envoy's access-log
        stream carries no trace of its entries' requests)."""
        with self.server_span(REPORT_SPAN, source, None, **{"mixerhub.records": len(bags)}):
            await policy.report(bags)

    # -- the policy engine: cache hits and adapter calls --------------------------------

    def instrument(self, policy: Any) -> None:
        """Let a freshly loaded :class:`~mixerhub.dispatch.PolicyEngine` mark cache hits on
        the check span and open a child span per adapter call. The engine is rewired, not
        changed, so an untraced hub runs exactly the same code as before."""
        cache = getattr(policy, "cache", None)
        if cache is not None:
            policy.cache = _ObservedCache(cache, self._current)
        snapshot = getattr(policy, "snapshot", None)
        if snapshot is not None:
            adapters = {name: _TracedAdapter(name, adapter, self._tracer, self._internal)
                        for name, adapter in snapshot.adapters.items()}
            policy.snapshot = dataclasses.replace(snapshot, adapters=adapters)

    # -- shutdown ----------------------------------------------------------------------

    async def shutdown(self, timeout: float = SHUTDOWN_SECONDS) -> bool:
        """Export the spans still queued and stop, waiting at most ``timeout`` seconds (an
        unreachable collector must not hold the hub's exit). True when it finished."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not done.done():
                done.set_result(None)

        def work() -> None:
            try:
                self._provider.force_flush(int(timeout * 1000))
                self._provider.shutdown()
            finally:
                try:
                    loop.call_soon_threadsafe(settle)
                except RuntimeError:  # the loop is gone: nobody waits any more
                    pass

        # A daemon thread, not the loop's executor: the interpreter's exit never joins it.
        threading.Thread(target=work, name="mixerhub-tracing-shutdown", daemon=True).start()
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            self._log.warning("spans not exported before shutdown", timeout_seconds=timeout,
                              endpoint=self.endpoint)
            return False
        return True


class _ObservedCache:
    """The decision cache, marking ``mixerhub.cache_hit`` on the current span."""

    def __init__(self, cache: Any, current: Callable[[], Any]) -> None:
        self._cache = cache
        self._current = current

    def lookup(self, values: Mapping[str, Any]) -> Any:
        verdict = self._cache.lookup(values)
        self._current().set_attribute("mixerhub.cache_hit", verdict is not None)
        return verdict

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache, name)


class _TracedAdapter:
    """An adapter whose check, quota and report calls are child spans; everything else
    (status, fail_closed, bind, stop) is the adapter's own."""

    def __init__(self, handler: str, adapter: Any, tracer: Any, kind: Any) -> None:
        self._adapter = adapter
        self._tracer = tracer
        self._kind = kind
        self._attributes = {"mixerhub.handler": handler,
                            "mixerhub.adapter": type(adapter).__name__}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    async def check(self, instance: Any) -> Any:
        with self._span("check") as span:
            result = await self._adapter.check(instance)
            span.set_attribute("mixerhub.status_code", result.code)
            return result

    async def quota(self, instance: Any, args: Any) -> Any:
        with self._span("quota") as span:
            result = await self._adapter.quota(instance, args)
            span.set_attribute("mixerhub.granted", result.granted)
            return result

    async def report(self, instances: Sequence[Any]) -> Any:
        with self._span("report") as span:
            span.set_attribute("mixerhub.records", len(instances))
            return await self._adapter.report(instances)

    def _span(self, call: str) -> Any:
        return self._tracer.start_as_current_span(f"{ADAPTER_SPAN}.{call}", kind=self._kind,
                                                  attributes=self._attributes)


def _exporter(endpoint: str) -> Any:
    """OTLP over gRPC: ``HOST:PORT`` or ``http://HOST:PORT`` in plaintext,
    ``https://HOST:PORT`` over TLS. The exporter reads the standard ``OTEL_EXPORTER_OTLP_*``
    variables for headers, certificates, compression and timeout."""
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        # xds-protos (a dependency, for Envoy's APIs) ships an older copy of the OTLP protos
        # under the same opentelemetry/proto/ path; whichever wheel pip installed last wins.
        raise RuntimeError(
            f"tracing: the OpenTelemetry exporter does not load ({exc}). If xds-protos was "
            "installed after opentelemetry-proto it replaced the OTLP protos: run "
            "'pip install --force-reinstall --no-deps opentelemetry-proto' (make install "
            "does)") from None

    return OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https://"))


def _metadata(context: Any) -> dict[str, str]:
    """The call's metadata as a carrier: gRPC keys are lower case already."""
    return {key: value for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)}


def b3_traceparent(headers: Mapping[str, str]) -> str | None:
    """The W3C ``traceparent`` equivalent of Zipkin B3 headers (``b3: T-S[-D]`` or
    ``x-b3-traceid``/``x-b3-spanid``/``x-b3-sampled``), or None without them. A 64-bit
    trace id is left-padded to 128 bits; no sampling decision (deferred) counts as
    sampled, so the hub's spans join the caller's trace."""
    single = headers.get("b3")
    if single:
        parts = single.split("-")
        if len(parts) < 2:
            return None  # "0"/"1"/"d" alone: a sampling decision without ids
        trace_id, span_id = parts[0], parts[1]
        sampled = parts[2] if len(parts) > 2 else ""
    else:
        trace_id, span_id = headers.get("x-b3-traceid", ""), headers.get("x-b3-spanid", "")
        sampled = "d" if headers.get("x-b3-flags") == "1" else headers.get("x-b3-sampled", "")
    trace_id, span_id = trace_id.lower().rjust(32, "0"), span_id.lower()
    if not (_hex(trace_id, 32) and _hex(span_id, 16)):
        return None
    flags = "00" if sampled in ("0", "false") else "01"
    return f"00-{trace_id}-{span_id}-{flags}"


def _hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text) \
        and text.strip("0") != ""
