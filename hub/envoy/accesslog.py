"""``envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs``: Envoy's gRPC access
logger streams HTTP and TCP entries; each entry becomes one report bag.

The stream's first message names the node (``context.reporter.uid``); later ones may omit
it. Bags are dispatched per message, so a long stream reports as it goes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.accesslog.v3 import als_pb2

from mixerhub.attributes.bag import AttributeBag
from mixerhub.envoy.attributes import address, split_path
from mixerhub.errors import MixerhubError
from mixerhub.metrics import Metrics
from mixerhub.policy import Policy
from mixerhub.server.guard import parse
from mixerhub.server.shedding import ReportGate
from mixerhub.tracing import Tracing

SERVICE_NAME = "envoy.service.accesslog.v3.AccessLogService"
_UTC = dt.timezone.utc
_METHODS = {v.number: v.name for v in base_pb2.RequestMethod.DESCRIPTOR.values if v.number}
#: Envoy's short response-flag codes (``%RESPONSE_FLAGS%``) → ``context.proxy_error_code``.
_FLAGS = (("failed_local_healthcheck", "LH"), ("no_healthy_upstream", "UH"),
          ("upstream_request_timeout", "UT"), ("local_reset", "LR"),
          ("upstream_remote_reset", "UR"), ("upstream_connection_failure", "UF"),
          ("upstream_connection_termination", "UC"), ("upstream_overflow", "UO"),
          ("no_route_found", "NR"), ("delay_injected", "DI"), ("fault_injected", "FI"),
          ("rate_limited", "RL"), ("unauthorized_details", "UAEX"),
          ("rate_limit_service_error", "RLSE"), ("downstream_connection_termination", "DC"),
          ("upstream_retry_limit_exceeded", "URX"), ("stream_idle_timeout", "SI"),
          ("invalid_envoy_request_headers", "IH"), ("downstream_protocol_error", "DPE"),
          ("no_cluster_found", "NC"), ("overload_manager", "OM"))


class AccessLogService:
    """Turns streamed access-log entries into report bags for the current policy."""

    def __init__(self, policy: Callable[[], Policy], metrics: Metrics, log: Any,
                 reports: ReportGate | None = None, tracing: Tracing | None = None) -> None:
        self._policy = policy
        self._tracing = tracing
        self._gate = reports or ReportGate(metrics, 0)
        self._log = log
        self._reports = metrics.reports.labels("envoy_als")
        self._bad = metrics.bad_requests.labels("envoy_als", "StreamAccessLogs")

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            "StreamAccessLogs": grpc.stream_unary_rpc_method_handler(self._stream)})

    async def _stream(self, requests: AsyncIterator[bytes],
                      context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        reporter: dict[str, Any] = {}
        try:
            async for raw in requests:
                message = parse(als_pb2.StreamAccessLogsMessage, raw)
                if message.HasField("identifier"):
                    reporter = _reporter(message.identifier)
                bags = entry_bags(message, reporter)
                self._reports.inc(len(bags))
                async with self._gate:  # backpressure: the stream is not read meanwhile
                    if self._tracing is None:
                        await self._policy().report(bags)
                    else:
                        await self._tracing.report("envoy_als", self._policy(), bags)
        except MixerhubError as exc:
            self._bad.inc()
            self._log.info("access-log stream rejected", error=str(exc))
            await context.abort(exc.grpc_status, str(exc))
        return b""  # StreamAccessLogsResponse has no fields


def _reporter(identifier: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if identifier.node.id:
        values["context.reporter.uid"] = identifier.node.id
    return values


def entry_bags(message: Any, reporter: dict[str, Any]) -> list[AttributeBag]:
    """One bag per HTTP or TCP entry of a stream message."""
    bags = []
    for http in message.http_logs.log_entry:
        values = dict(reporter)
        common(values, http.common_properties)
        http_entry(values, http)
        bags.append(AttributeBag(values))
    for tcp in message.tcp_logs.log_entry:
        values = dict(reporter)
        common(values, tcp.common_properties)
        tcp_entry(values, tcp)
        bags.append(AttributeBag(values))
    return bags


def common(values: dict[str, Any], props: Any) -> None:
    """Addresses, times, TLS and response flags shared by HTTP and TCP entries."""
    address(values, "source", props.downstream_remote_address)
    address(values, "destination", props.downstream_local_address)
    if props.HasField("start_time"):
        values["request.time"] = props.start_time.ToDatetime(tzinfo=_UTC)
    duration = _duration(props)
    if duration is not None:
        values["response.duration"] = duration
        if "request.time" in values:
            values["response.time"] = values["request.time"] + duration
    tls = props.tls_properties
    if tls.tls_sni_hostname:
        values["connection.requested_server_name"] = tls.tls_sni_hostname
    sans = [san.uri for san in tls.peer_certificate_properties.subject_alt_name if san.uri]
    if sans:
        values["source.principal"] = sans[0]
    if props.HasField("tls_properties"):
        values["connection.mtls"] = bool(len(tls.peer_certificate_properties.subject_alt_name)
                                         or tls.peer_certificate_properties.subject)
    if props.custom_tags.get("mixerhub.mode") == "lua":
        # The Lua filter marks the requests it had to ask the hub about (mixerhub.lua).
        marks = props.metadata.filter_metadata.get("mixerhub")
        values["check.cache_hit"] = not (marks is not None and (
            "cache_miss" in marks.fields or "hub_unreachable" in marks.fields))
    flags = [code for name, code in _FLAGS if _flag(props.response_flags, name)]
    if flags:
        values["context.proxy_error_code"] = ",".join(flags)


def _flag(flags: Any, name: str) -> bool:
    value = getattr(flags, name)
    return value if isinstance(value, bool) else flags.HasField(name)  # a details message


def _duration(props: Any) -> dt.timedelta | None:
    if props.HasField("duration"):
        return cast(dt.timedelta, props.duration.ToTimedelta())
    if props.HasField("time_to_last_downstream_tx_byte"):
        return cast(dt.timedelta, props.time_to_last_downstream_tx_byte.ToTimedelta())
    return None


def http_entry(values: dict[str, Any], entry: Any) -> None:
    request, response = entry.request, entry.response
    headers = dict(request.request_headers)
    values["request.headers"] = headers
    if request.request_method in _METHODS:
        values["request.method"] = _METHODS[request.request_method]
    for name, value in (("request.scheme", request.scheme), ("request.host", request.authority),
                        ("request.useragent", request.user_agent),
                        ("request.referer", request.referer), ("request.id", request.request_id)):
        if value:
            values[name] = value
    if request.path:
        values["request.path"] = request.path
        values["request.url_path"], values["request.query_params"] = split_path(request.path)
    values["request.size"] = request.request_body_bytes
    values["request.total_size"] = request.request_headers_bytes + request.request_body_bytes
    if response.HasField("response_code"):
        values["response.code"] = response.response_code.value
    values["response.size"] = response.response_body_bytes
    values["response.total_size"] = response.response_headers_bytes + response.response_body_bytes
    values["response.headers"] = dict(response.response_headers)
    grpc_call = headers.get("content-type", "").startswith("application/grpc")
    values["context.protocol"] = "grpc" if grpc_call else "http"


def tcp_entry(values: dict[str, Any], entry: Any) -> None:
    values["context.protocol"] = "tcp"
    values["connection.received.bytes"] = entry.connection_properties.received_bytes
    values["connection.sent.bytes"] = entry.connection_properties.sent_bytes
    values["connection.event"] = "close"
    if "response.duration" in values:
        values["connection.duration"] = values.pop("response.duration")
        values.pop("response.time", None)
