"""A real OTLP/gRPC trace receiver for tests: ``TraceService/Export`` served from the
generated classes of ``opentelemetry-proto``, keeping every span it is sent."""

from __future__ import annotations

import dataclasses
import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclasses.dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str  # hex, as in traceparent
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    status: int  # Status.StatusCode: 0 unset, 1 ok, 2 error
    attributes: dict[str, Any]
    resource: dict[str, Any]


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Start with :meth:`start` (a free 127.0.0.1 port), read with :meth:`spans`. A
    stalled receiver accepts exports and never answers (a collector that hangs)."""

    def __init__(self, stall: bool = False) -> None:
        self._stall = threading.Event() if stall else None  # never answer until stopped
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._server: grpc.Server | None = None
        self.port = 0

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the RPC's name
        if self._stall is not None:
            self._stall.wait()
        with self._lock:
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope in resource_spans.scope_spans:
                    self._spans += [_span(s, resource) for s in scope.spans]
        return trace_service_pb2.ExportTraceServiceResponse()

    def start(self) -> Receiver:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._stall is not None:
            self._stall.set()
        if self._server is not None:
            self._server.stop(grace=None)

    def spans(self, name: str | None = None) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self._spans if name is None or s.name == name]


def _span(span: Any, resource: dict[str, Any]) -> ReceivedSpan:
    return ReceivedSpan(span.name, span.trace_id.hex(), span.span_id.hex(),
                        span.parent_span_id.hex(), span.kind, span.status.code,
                        _attributes(span.attributes), resource)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in pairs}
