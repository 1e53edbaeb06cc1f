"""A real hub (``mixerhub serve --otlp-endpoint``) tracing into a real OTLP receiver: span
names and attributes, the caller's trace continued from gRPC metadata, HTTP headers and
Envoy's AttributeContext, trace ids in the hub's JSON log lines, and spans flushed at
shutdown."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.accesslog.v3 import als_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2

from mixerhub import __version__
from mixerhub.api.mixer.v1 import check_pb2, report_pb2
from mixerhub.attributes.compression import Encoder
from tests.hub.test_cli import free_port, wait_http
from tests.tracing.receiver import ReceivedSpan, Receiver

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
SERVER = 2  # Span.SpanKind.SPAN_KIND_SERVER
ERROR = 2  # Status.StatusCode.STATUS_CODE_ERROR
ALLOWED = {"destination.service.name": "ratings", "source.labels": {"version": "v1"},
           "source.uid": "kubernetes://productpage-v1.default", "request.path": "/ratings/1"}


@dataclasses.dataclass(frozen=True)
class Caller:
    """A caller's span: what it sends as ``traceparent``."""
    trace_id: str
    span_id: str

    @classmethod
    def new(cls) -> Caller:
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


@dataclasses.dataclass
class Run:
    spans: list[ReceivedSpan]
    logs: list[dict[str, Any]]
    callers: dict[str, Caller]
    http_verdict: dict[str, Any]
    exit_code: int
    exit_seconds: float

    def traced(self, call: str) -> list[ReceivedSpan]:
        """The spans of one call's trace, the hub's server span first."""
        trace = self.callers[call].trace_id
        found = sorted((s for s in self.spans if s.trace_id == trace),
                       key=lambda s: s.kind != SERVER)
        assert found, f"no span of the {call} call's trace arrived"
        return found


def mixer_check(channel: grpc.Channel, attributes: dict[str, Any], caller: Caller) -> Any:
    encoder = Encoder()
    request = check_pb2.CheckRequest(attributes=encoder.encode(attributes),
                                     global_word_count=encoder.global_word_count)
    raw = channel.unary_unary("/istio.mixer.v1.Mixer/Check")(
        request.SerializeToString(), metadata=[("traceparent", caller.traceparent)], timeout=10)
    return check_pb2.CheckResponse.FromString(raw)


def envoy_check(channel: grpc.Channel, headers: dict[str, str],
                envoy_span: Caller | None = None) -> Any:
    ctx = attribute_context_pb2.AttributeContext()
    ctx.source.labels["version"] = "v1"
    http = ctx.request.http
    http.method, http.path, http.host = "GET", "/ratings/1", "ratings:9080"
    http.headers.update(headers)
    ctx.context_extensions["destination.service.name"] = "ratings"
    metadata = [("traceparent", envoy_span.traceparent)] if envoy_span else []
    raw = channel.unary_unary("/envoy.service.auth.v3.Authorization/Check")(
        external_auth_pb2.CheckRequest(attributes=ctx).SerializeToString(),
        metadata=metadata, timeout=10)
    return external_auth_pb2.CheckResponse.FromString(raw)


def mixer_report(channel: grpc.Channel, bags: list[dict[str, Any]], caller: Caller) -> None:
    encoder = Encoder()
    request = report_pb2.ReportRequest(
        attributes=[encoder.encode(b) for b in bags], global_word_count=encoder.global_word_count,
        repeated_attributes_semantics=report_pb2.ReportRequest.INDEPENDENT_ENCODING)
    channel.unary_unary("/istio.mixer.v1.Mixer/Report")(
        request.SerializeToString(), metadata=[("traceparent", caller.traceparent)], timeout=10)


def access_logs(channel: grpc.Channel, entries: int) -> None:
    message = als_pb2.StreamAccessLogsMessage()
    message.identifier.node.id = "sidecar~10.1.2.3~ratings-v1.default~default.svc"
    for i in range(entries):
        entry = message.http_logs.log_entry.add()
        entry.request.path = f"/ratings/{i}"
        entry.response.response_code.value = 200
    channel.stream_unary("/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs")(
        iter([message.SerializeToString()]), timeout=10)


def http_check(port: int, attributes: dict[str, Any], caller: Caller) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/check", data=json.dumps({"attributes": attributes}).encode(),
        headers={"content-type": "application/json", "traceparent": caller.traceparent})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def drive(grpc_port: int, http_port: int) -> tuple[dict[str, Caller], dict[str, Any]]:
    """Every traced call the tests look at, each from a caller with a trace of its own."""
    callers = {name: Caller.new() for name in
               ("check", "check again", "denied", "malformed", "http", "envoy", "envoy b3",
                "envoy traced", "report")}
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        for name in ("check", "check again"):  # the second is a decision-cache hit
            assert mixer_check(channel, ALLOWED, callers[name]).precondition.status.code == 0
        admin = {**ALLOWED, "request.path": "/admin/users"}
        assert mixer_check(channel, admin, callers["denied"]).precondition.status.code == 7
        with pytest.raises(grpc.RpcError) as bad:
            channel.unary_unary("/istio.mixer.v1.Mixer/Check")(
                b"\xff\xff\xff", metadata=[("traceparent", callers["malformed"].traceparent)],
                timeout=10)
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        envoy = envoy_check(channel, {"traceparent": callers["envoy"].traceparent})
        assert envoy.status.code == 0
        b3 = callers["envoy b3"]
        envoy_check(channel, {"x-b3-traceid": b3.trace_id, "x-b3-spanid": b3.span_id,
                              "x-b3-sampled": "1"})
        # Envoy traced the call itself: its ext_authz span (metadata) is the parent, not
        # the span of the client that sent the checked request (its headers).
        envoy_check(channel, {"traceparent": Caller.new().traceparent},
                    envoy_span=callers["envoy traced"])
        mixer_report(channel, [{**ALLOWED, "response.code": 200},
                               {**ALLOWED, "response.code": 503}], callers["report"])
        access_logs(channel, 3)
    verdict = http_check(http_port, {**ALLOWED, "source.uid": "kubernetes://http.default"},
                         callers["http"])
    return callers, verdict


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    receiver = Receiver().start()
    tmp = tmp_path_factory.mktemp("tracing")
    grpc_port, http_port = free_port(), free_port()
    # A minute between exports: the spans can only arrive through the shutdown's flush.
    env = {**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    stderr = (tmp / "hub.stderr").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixerhub", "serve", "--no-watch", "--log-level", "debug",
         "--grpc", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}",
         "--config", str(QUICKSTART), "--otlp-endpoint", f"127.0.0.1:{receiver.port}"],
        stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        wait_http(f"http://127.0.0.1:{http_port}/readyz")
        callers, verdict = drive(grpc_port, http_port)
        assert receiver.spans() == [], "exported before shutdown: the flush is not tested"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        seconds = time.monotonic() - started
        lines = (tmp / "hub.stderr").read_text().splitlines()
        logs = [json.loads(line) for line in lines if line.startswith("{")]
        yield Run(receiver.spans(), logs, callers, verdict, code, seconds)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()
        receiver.stop()


def test_shutdown_flushes_the_queued_spans_promptly(run: Run) -> None:
    assert run.exit_code == 0
    assert run.exit_seconds < 10
    assert {s.name for s in run.spans} >= {"mixerhub.check", "mixerhub.report",
                                           "mixerhub.adapter.check", "mixerhub.adapter.report"}


def test_resource_names_the_hub(run: Run) -> None:
    resource = run.spans[0].resource
    assert resource["service.name"] == "mixerhub"
    assert resource["service.version"] == __version__
    assert resource["host.name"]


def test_mixer_check_continues_the_callers_trace(run: Run) -> None:
    caller = run.callers["check"]
    span, *children = run.traced("check")
    assert (span.name, span.kind) == ("mixerhub.check", SERVER)
    assert span.trace_id == caller.trace_id
    assert span.parent_span_id == caller.span_id
    assert span.attributes == {"mixerhub.source": "mixer", "rpc.system": "grpc",
                               "mixerhub.outcome": "ok", "mixerhub.status_code": 0,
                               "mixerhub.rules_matched": 1, "mixerhub.cache_hit": False}
    # The listchecker decided: its call is a child span.
    (adapter,) = children
    assert adapter.name == "mixerhub.adapter.check"
    assert adapter.parent_span_id == span.span_id
    assert adapter.attributes["mixerhub.handler"] == "known-versions.handler.istio-system"
    assert adapter.attributes["mixerhub.status_code"] == 0


def test_a_repeated_check_is_a_cache_hit_without_adapter_spans(run: Run) -> None:
    (span,) = run.traced("check again")
    assert span.attributes["mixerhub.cache_hit"] is True
    assert span.attributes["mixerhub.outcome"] == "ok"
    assert span.parent_span_id == run.callers["check again"].span_id


def test_a_denial_carries_its_status_code(run: Run) -> None:
    span = run.traced("denied")[0]
    assert span.attributes["mixerhub.outcome"] == "denied"
    assert span.attributes["mixerhub.status_code"] == 7
    assert span.attributes["mixerhub.rules_matched"] == 1  # no-admin


def test_a_malformed_check_is_an_error_span(run: Run) -> None:
    (span,) = run.traced("malformed")
    assert span.attributes["mixerhub.outcome"] == "error"
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert span.status == ERROR


def test_http_check_continues_the_trace_of_its_headers(run: Run) -> None:
    caller = run.callers["http"]
    span, *children = run.traced("http")
    assert span.name == "mixerhub.check"
    assert (span.trace_id, span.parent_span_id) == (caller.trace_id, caller.span_id)
    assert span.attributes["mixerhub.source"] == "http"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["mixerhub.outcome"] == "ok"
    assert span.attributes["mixerhub.status_code"] == run.http_verdict["status"]["code"]
    # The listchecker's verdict came from the cache (the Mixer checks asked the same); no
    # quotas named, so the hub charged the default quota: a memquota call, never cached.
    assert span.attributes["mixerhub.cache_hit"] is True
    assert [c.name for c in children] == ["mixerhub.adapter.quota"]
    assert children[0].attributes["mixerhub.granted"] == 1
    assert all(c.parent_span_id == span.span_id for c in children)


def test_envoy_check_continues_the_trace_of_the_checked_request(run: Run) -> None:
    for call in ("envoy", "envoy b3", "envoy traced"):
        caller = run.callers[call]
        span = run.traced(call)[0]
        assert span.name == "mixerhub.check"
        assert span.parent_span_id == caller.span_id, call
        assert span.attributes["mixerhub.source"] == "envoy"
        assert span.attributes["mixerhub.outcome"] == "ok"


def test_report_span_counts_records_and_parents_adapter_calls(run: Run) -> None:
    span, *children = run.traced("report")
    assert span.name == "mixerhub.report"
    assert span.parent_span_id == run.callers["report"].span_id
    assert span.attributes["mixerhub.source"] == "mixer"
    assert span.attributes["mixerhub.records"] == 2
    # One batch per handler (stdio, prometheus), each with both records.
    assert sorted(c.attributes["mixerhub.handler"] for c in children) == [
        "console.handler.istio-system", "metrics.handler.istio-system"]
    assert all(c.name == "mixerhub.adapter.report" and c.attributes["mixerhub.records"] == 2
               and c.parent_span_id == span.span_id for c in children)


def test_log_lines_inside_a_span_carry_its_ids(run: Run) -> None:
    span = run.traced("check")[0]
    answered = [line for line in run.logs if line.get("trace_id") == span.trace_id]
    assert answered and answered[0]["event"] == "check answered"
    assert answered[0]["span_id"] == span.span_id
    # An existing line of the error path too: the guard's "request rejected".
    malformed = run.traced("malformed")[0]
    (rejected,) = [line for line in run.logs if line["event"] == "request rejected"]
    assert (rejected["trace_id"], rejected["span_id"]) == (malformed.trace_id,
                                                           malformed.span_id)


def test_log_lines_outside_spans_carry_no_ids(run: Run) -> None:
    serving = [line for line in run.logs if line["event"] == "serving"]
    assert serving and "trace_id" not in serving[0]


def test_access_log_messages_are_report_spans_of_their_own(run: Run) -> None:
    (span,) = [s for s in run.spans if s.attributes.get("mixerhub.source") == "envoy_als"]
    assert span.name == "mixerhub.report"
    assert span.parent_span_id == ""  # the stream carries no trace of its entries
    assert span.attributes["mixerhub.records"] == 3
    children = [s for s in run.spans if s.parent_span_id == span.span_id]
    assert {c.name for c in children} == {"mixerhub.adapter.report"}
