"""A Mixer v1 client: compresses attributes with the global dictionary, calls Check and
Report, and decodes verdicts. The caching client (:mod:`mixerhub.proxy_filter.gate`) builds
on it; tests use it directly.

A hub whose dictionary is shorter than ours answers INVALID_ARGUMENT asking to resend with
``global_word_count=N``: the client then encodes with the first N words only, from then on.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import grpc

from mixerhub.api.mixer.v1 import check_pb2, report_pb2
from mixerhub.attributes.compression import Encoder, decode_references
from mixerhub.attributes.dictionary import global_words
from mixerhub.verdict import HeaderOp, HeaderOperation, QuotaGrant, QuotaRequest, Verdict

CHECK = "/istio.mixer.v1.Mixer/Check"
REPORT = "/istio.mixer.v1.Mixer/Report"
Encoding = Literal["independent", "delta"]
#: Reconnect quickly after a hub restart (gRPC's default backoff grows to 120 s).
CHANNEL_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 2000))
_RESEND = re.compile(r"resend with global_word_count=(\d+)")


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    verdict: Verdict
    quotas: dict[str, QuotaGrant]


class MixerClient:
    """One channel to a hub (or any Mixer v1 server)."""

    def __init__(self, target: str, *, timeout: float = 5.0, encoder: Encoder | None = None,
                 channel: grpc.aio.Channel | None = None,
                 dictionary: Sequence[str] | None = None) -> None:
        """``dictionary``: the words ``encoder`` (default: one over them) was built on."""
        self.words = tuple(global_words() if dictionary is None else dictionary)
        self.encoder = encoder or Encoder(self.words)
        self.timeout = timeout
        self.channel = channel or grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._check = self.channel.unary_unary(
            CHECK, request_serializer=check_pb2.CheckRequest.SerializeToString,
            response_deserializer=check_pb2.CheckResponse.FromString)
        self._report = self.channel.unary_unary(
            REPORT, request_serializer=report_pb2.ReportRequest.SerializeToString,
            response_deserializer=report_pb2.ReportResponse.FromString)

    async def check(self, attributes: Mapping[str, Any],
                    quotas: Mapping[str, QuotaRequest] | None = None,
                    dedup_id: str = "", timeout: float | None = None) -> CheckResult:
        request = self._check_request(attributes, quotas, dedup_id)
        try:
            response = await self._check(request, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as exc:
            if not self._fell_back(exc):
                raise
            request = self._check_request(attributes, quotas, dedup_id)
            response = await self._check(request, timeout=timeout or self.timeout)
        return decode_check_response(response)

    def _check_request(self, attributes: Mapping[str, Any],
                       quotas: Mapping[str, QuotaRequest] | None,
                       dedup_id: str) -> check_pb2.CheckRequest:
        request = check_pb2.CheckRequest(
            attributes=self.encoder.encode(attributes),
            global_word_count=self.encoder.global_word_count,
            deduplication_id=dedup_id)
        for name, q in (quotas or {}).items():
            request.quotas[name].amount = q.amount
            request.quotas[name].best_effort = q.best_effort
        return request

    def _fell_back(self, exc: grpc.aio.AioRpcError) -> bool:
        """Switch to the hub's shorter dictionary when it asks; True if the call may be
        resent."""
        found = _RESEND.search(exc.details() or "")
        if exc.code() is not grpc.StatusCode.INVALID_ARGUMENT or found is None:
            return False
        count = int(found.group(1))
        if count >= self.encoder.global_word_count:
            return False
        # In place: whoever shares this encoder (the report batcher) follows.
        self.encoder.index = Encoder(self.words[:count]).index
        return True

    async def report(self, bags: Sequence[Mapping[str, Any]],
                     encoding: Encoding = "independent") -> None:
        for request in encode_report(self.encoder, bags, encoding):
            await self.send_report(request)

    async def send_report(self, request: report_pb2.ReportRequest,
                          timeout: float | None = None) -> None:
        """Send an encoded ReportRequest (the report batcher encodes its own)."""
        await self._report(request, timeout=timeout or self.timeout)

    async def close(self) -> None:
        await self.channel.close()


def encode_report(encoder: Encoder, bags: Sequence[Mapping[str, Any]],
                  encoding: Encoding = "independent") -> list[report_pb2.ReportRequest]:
    """INDEPENDENT: one request, words shared in ``default_words``. DELTA: each bag after
    the first carries only what changed; a bag that drops an attribute cannot be a delta,
    so it starts a new request."""
    if encoding == "independent":
        request = report_pb2.ReportRequest(
            global_word_count=encoder.global_word_count,
            repeated_attributes_semantics=report_pb2.ReportRequest.INDEPENDENT_ENCODING)
        shared: list[str] = []
        for bag in bags:
            request.attributes.append(encoder.encode(bag, shared_words=shared))
        request.default_words.extend(shared)
        return [request]
    requests: list[report_pb2.ReportRequest] = []
    previous: Mapping[str, Any] | None = None
    for bag in bags:
        if previous is None or not previous.keys() <= bag.keys():
            requests.append(report_pb2.ReportRequest(
                global_word_count=encoder.global_word_count,
                repeated_attributes_semantics=report_pb2.ReportRequest.DELTA_ENCODING))
            delta = dict(bag)
        else:
            delta = {k: v for k, v in bag.items() if k not in previous or previous[k] != v}
        requests[-1].attributes.append(encoder.encode(delta))
        previous = bag
    return requests


def decode_check_response(response: check_pb2.CheckResponse) -> CheckResult:
    pre = response.precondition
    rd = pre.route_directive
    verdict = Verdict(
        code=pre.status.code, message=pre.status.message,
        valid_duration=pre.valid_duration.ToTimedelta(), valid_use_count=pre.valid_use_count,
        references=tuple(decode_references(pre.referenced_attributes)),
        request_header_ops=_ops(rd.request_header_operations),
        response_header_ops=_ops(rd.response_header_operations),
        direct_response_code=rd.direct_response_code,
        direct_response_body=rd.direct_response_body)
    quotas = {
        name: QuotaGrant(granted_amount=q.granted_amount,
                         valid_duration=q.valid_duration.ToTimedelta(),
                         code=q.status.code, message=q.status.message,
                         references=tuple(decode_references(q.referenced_attributes)))
        for name, q in response.quotas.items()
    }
    return CheckResult(verdict, quotas)


def _ops(ops: Any) -> tuple[HeaderOp, ...]:
    return tuple(HeaderOp(op.name, op.value, HeaderOperation(op.operation)) for op in ops)

