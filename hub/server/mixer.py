"""``istio.mixer.v1.Mixer``: Check and Report on the wire.

Handlers take raw bytes (no deserializer registered) so that undecodable protobuf is our
INVALID_ARGUMENT with a reason, not grpc's generic INTERNAL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from mixerhub.api.mixer.v1 import check_pb2, report_pb2
from mixerhub.attributes.bag import AttributeBag
from mixerhub.attributes.compression import Decoder, Encoder
from mixerhub.metrics import Metrics
from mixerhub.policy import Policy
from mixerhub.server.guard import guarded, parse, unary
from mixerhub.server.shedding import ReportGate, Shedder
from mixerhub.tracing import CHECK_SPAN, REPORT_SPAN, Tracing
from mixerhub.verdict import CheckOutcome, QuotaRequest

SERVICE_NAME = "istio.mixer.v1.Mixer"
_DELTA = report_pb2.ReportRequest.DELTA_ENCODING
_EMPTY_REPORT_RESPONSE = report_pb2.ReportResponse().SerializeToString()


class MixerService:
    """Decodes requests, asks the current policy, encodes answers."""

    def __init__(self, policy: Callable[[], Policy], metrics: Metrics, log: Any,
                 decoder: Decoder | None = None, encoder: Encoder | None = None,
                 shedder: Shedder | None = None, reports: ReportGate | None = None,
                 tracing: Tracing | None = None) -> None:
        self._policy = policy
        self._tracing = tracing
        self._shedder = shedder
        self._report_gate = reports or ReportGate(metrics, 0)
        self._metrics = metrics
        self._log = log
        self._decoder = decoder or Decoder()
        self._encoder = encoder or Encoder()
        self._check_ok = metrics.checks.labels("mixer", "ok")
        self._check_denied = metrics.checks.labels("mixer", "denied")
        self._check_error = metrics.checks.labels("mixer", "error")
        self._check_time = metrics.check_duration.labels("mixer")
        self._reports = metrics.reports.labels("mixer")
        self._encoded_refs: dict[tuple[Any, ...], Any] = {}

    def handler(self) -> grpc.GenericRpcHandler:
        def on_check_error() -> None:
            self._check_error.inc()

        check = guarded("mixer", "Check", self.check, self._metrics, self._log,
                        on_check_error, self._shedder)
        report = guarded("mixer", "Report", self.report, self._metrics, self._log)
        if self._tracing is not None:  # the caller's trace is in the call's metadata
            check = self._tracing.wrap_grpc(CHECK_SPAN, "mixer", check)
            report = self._tracing.wrap_grpc(REPORT_SPAN, "mixer", report)
        return unary(SERVICE_NAME, {"Check": check, "Report": report})

    async def check(self, raw: bytes) -> bytes:
        started = time.perf_counter()
        request = parse(check_pb2.CheckRequest, raw)
        values = self._decoder.decode(request.attributes,
                                      global_word_count=request.global_word_count)
        quotas = {name: QuotaRequest(q.amount, q.best_effort) for name, q in request.quotas.items()}
        outcome = await self._policy().check(AttributeBag(values), quotas,
                                             request.deduplication_id)
        response = self._encode_check(outcome)
        if self._tracing is not None:
            self._tracing.check_outcome(outcome)
        (self._check_ok if outcome.verdict.ok else self._check_denied).inc()
        self._check_time.observe(time.perf_counter() - started)
        return response

    def _encode_check(self, outcome: CheckOutcome) -> bytes:
        verdict = outcome.verdict
        response = check_pb2.CheckResponse()
        pre = response.precondition
        pre.status.code = verdict.code
        if verdict.message:
            pre.status.message = verdict.message
        pre.valid_duration.FromTimedelta(verdict.valid_duration)
        pre.valid_use_count = verdict.valid_use_count
        pre.referenced_attributes.CopyFrom(self._references(verdict.references))
        _route_directive(pre.route_directive, verdict)
        for name, grant in outcome.quotas.items():
            q = response.quotas[name]
            q.granted_amount = grant.granted_amount
            q.valid_duration.FromTimedelta(grant.valid_duration)
            if grant.code:
                q.status.code = grant.code
                q.status.message = grant.message
            q.referenced_attributes.CopyFrom(self._encoder.encode_references(grant.references))
        return response.SerializeToString()

    def _references(self, refs: tuple[Any, ...]) -> Any:
        """Encoded references, memoized: cached verdicts repeat the same few sets."""
        encoded = self._encoded_refs.get(refs)
        if encoded is None:
            if len(self._encoded_refs) >= 4096:
                self._encoded_refs.clear()
            encoded = self._encoded_refs[refs] = self._encoder.encode_references(refs)
        return encoded

    async def report(self, raw: bytes) -> bytes:
        fast = self._decoder.decode_report_bytes(raw)  # C, for the plain kind of request
        if fast is not None:
            bags = [AttributeBag.adopt(values) for values in fast]
        else:  # parsed by protobuf, decoded in Python: every problem named exactly
            bags = decode_report(self._decoder, parse(report_pb2.ReportRequest, raw))
        self._reports.inc(len(bags))
        if self._tracing is not None:
            self._tracing.report_records(len(bags))
        async with self._report_gate:
            await self._policy().report(bags)
        return _EMPTY_REPORT_RESPONSE


def decode_report(decoder: Decoder, request: report_pb2.ReportRequest) -> list[AttributeBag]:
    """One bag per ``attributes`` entry; DELTA_ENCODING patches the previous bag."""
    values = decoder.decode_all(request.attributes, request.default_words,
                                request.global_word_count,
                                request.repeated_attributes_semantics == _DELTA)
    return [AttributeBag.adopt(v) for v in values]


def _route_directive(rd: Any, verdict: Any) -> None:
    for op in verdict.request_header_ops:
        rd.request_header_operations.add(name=op.name, value=op.value, operation=int(op.operation))
    for op in verdict.response_header_ops:
        rd.response_header_operations.add(name=op.name, value=op.value, operation=int(op.operation))
    if verdict.direct_response_code:
        rd.direct_response_code = verdict.direct_response_code
        rd.direct_response_body = verdict.direct_response_body
