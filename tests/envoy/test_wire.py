"""The Envoy-facing services over a real gRPC channel, without Envoy: exact attribute
mapping, reply encoding and error statuses."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from aiohttp import ClientSession
from envoy.config.core.v3 import base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.protobuf import struct_pb2

from mixerhub.app import Hub, Settings
from mixerhub.attributes.types import default_manifest
from mixerhub.envoy.accesslog import entry_bags
from mixerhub.envoy.attributes import check_attributes
from mixerhub.envoy.bootstrap import EnvoyOptions, render
from tests.conftest import CapturingPolicy, scrape
from tests.envoy.conftest import POLICY, start_hub
from tests.services.envoy import envoy_binary

AC = attribute_context_pb2.AttributeContext


def context(**http: object) -> AC:
    ctx = AC()
    ctx.source.address.socket_address.address = "10.1.2.3"
    ctx.source.address.socket_address.port_value = 51000
    ctx.source.principal = "spiffe://cluster.local/ns/default/sa/productpage"
    ctx.source.labels["version"] = "v1"
    ctx.destination.address.socket_address.address = "10.9.9.9"
    ctx.destination.address.socket_address.port_value = 9080
    ctx.request.time.FromDatetime(dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc))
    h = ctx.request.http
    h.id, h.method, h.host, h.scheme = "req-1", "GET", "ratings:9080", "http"
    h.path = "/ratings/7?verbose=1&lang=en&lang=fr"
    h.headers.update({"x-user": "alice", "user-agent": "curl/8", ":path": h.path})
    for k, v in http.items():
        setattr(h, k, v)
    ctx.context_extensions["destination.service.host"] = "ratings.default.svc.cluster.local"
    ctx.context_extensions["destination.port"] = "9080"
    ctx.context_extensions["not.an.attribute"] = "ignored"
    ctx.tls_session.sni = "ratings.default"
    return ctx


def test_attribute_context_maps_onto_mixer_attributes() -> None:
    values = check_attributes(context(), default_manifest())
    assert values == {
        "source.ip": ipaddress.ip_address("10.1.2.3"), "source.port": 51000,
        "source.principal": "spiffe://cluster.local/ns/default/sa/productpage",
        "source.labels": {"version": "v1"},
        "destination.ip": ipaddress.ip_address("10.9.9.9"), "destination.port": 9080,
        "connection.mtls": True, "connection.requested_server_name": "ratings.default",
        "request.time": dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc),
        "request.headers": {"x-user": "alice", "user-agent": "curl/8",
                            ":path": "/ratings/7?verbose=1&lang=en&lang=fr"},
        "request.method": "GET", "request.host": "ratings:9080", "request.scheme": "http",
        "request.path": "/ratings/7?verbose=1&lang=en&lang=fr",
        "request.url_path": "/ratings/7",
        "request.query_params": {"verbose": "1", "lang": "en"},
        "request.id": "req-1", "request.useragent": "curl/8", "context.protocol": "http",
        "destination.service.host": "ratings.default.svc.cluster.local",
    }


def test_grpc_content_type_makes_the_protocol_grpc() -> None:
    ctx = context()
    ctx.request.http.headers["content-type"] = "application/grpc+proto"
    assert check_attributes(ctx, default_manifest())["context.protocol"] == "grpc"


@pytest.fixture
async def capture() -> AsyncIterator[tuple[Hub, CapturingPolicy]]:
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0"))
    policy = CapturingPolicy()
    hub._use(policy)
    await hub.start()
    yield hub, policy
    await hub.stop()


async def authz_check(hub: Hub, request: object) -> external_auth_pb2.CheckResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.grpc.port}") as channel:
        return await external_auth_pb2_grpc.AuthorizationStub(channel).Check(request)


async def test_ext_authz_reaches_the_policy_with_the_mapped_bag(capture) -> None:
    hub, policy = capture
    reply = await authz_check(hub, external_auth_pb2.CheckRequest(attributes=context()))
    assert reply.status.code == 0 and reply.HasField("ok_response")
    assert policy.checks[0].values["request.url_path"] == "/ratings/7"
    metrics = await scrape(hub.http.port)
    assert metrics['mixerhub_checks_total{outcome="ok",source="envoy"}'] == 1


async def test_ext_authz_garbage_is_invalid_argument(capture) -> None:
    hub, _ = capture
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.grpc.port}") as channel:
        call = channel.unary_unary("/envoy.service.auth.v3.Authorization/Check")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(b"\xff\xff\xff")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ctx = context()
    ctx.context_extensions["destination.port"] = "not-a-number"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await authz_check(hub, external_auth_pb2.CheckRequest(attributes=ctx))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "destination.port" in caught.value.details()
    metrics = await scrape(hub.http.port)
    assert metrics['mixerhub_bad_requests_total{method="Check",service="envoy"}'] == 2


class Exploding(CapturingPolicy):
    async def check(self, bag, quotas, dedup_id):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")


async def test_a_failure_inside_the_hub_is_a_grpc_error_for_envoy_to_judge(capture) -> None:
    hub, _ = capture
    hub._use(Exploding())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await authz_check(hub, external_auth_pb2.CheckRequest(attributes=context()))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    metrics = await scrape(hub.http.port)
    assert metrics['mixerhub_checks_total{outcome="error",source="envoy"}'] == 1


async def test_denials_carry_status_body_and_headers(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path, POLICY.read_text())
    try:
        ctx = context()
        ctx.request.http.headers["x-user"] = "mallory"
        denied = await authz_check(hub, external_auth_pb2.CheckRequest(attributes=ctx))
        ctx.request.http.headers["x-user"] = "alice"
        allowed = await authz_check(hub, external_auth_pb2.CheckRequest(attributes=ctx))
    finally:
        await hub.stop()
    assert denied.status.code == 7
    assert denied.denied_response.status.code == 403
    assert denied.denied_response.body == "mallory is not welcome here"
    ok = allowed.ok_response
    assert [(h.header.key, h.header.value) for h in ok.headers] == [("x-mixerhub-user", "alice")]
    assert ok.headers[0].append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    assert [(h.header.key, h.header.value) for h in ok.response_headers_to_add] == [
        ("x-policy", "checked")]


def http_entry(path: str, code: int) -> accesslog_pb2.HTTPAccessLogEntry:
    entry = accesslog_pb2.HTTPAccessLogEntry()
    common = entry.common_properties
    common.downstream_remote_address.socket_address.address = "10.0.0.1"
    common.downstream_remote_address.socket_address.port_value = 4000
    common.downstream_local_address.socket_address.address = "10.0.0.2"
    common.downstream_local_address.socket_address.port_value = 8080
    common.start_time.FromDatetime(dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc))
    common.duration.FromTimedelta(dt.timedelta(milliseconds=12))
    common.response_flags.no_healthy_upstream = True
    entry.request.request_method = base_pb2.POST
    entry.request.path, entry.request.authority = path, "shop"
    entry.request.request_id = "r-9"
    entry.request.request_headers_bytes, entry.request.request_body_bytes = 100, 20
    entry.request.request_headers["content-type"] = "application/json"
    entry.response.response_code.value = code
    entry.response.response_headers_bytes, entry.response.response_body_bytes = 50, 7
    return entry


def test_access_log_entries_become_report_bags() -> None:
    message = als_pb2.StreamAccessLogsMessage()  # a message carries HTTP or TCP entries
    message.http_logs.log_entry.append(http_entry("/cart?x=1", 503))
    (http,) = entry_bags(message, {"context.reporter.uid": "node-1"})
    message = als_pb2.StreamAccessLogsMessage()
    tcp = message.tcp_logs.log_entry.add()
    tcp.connection_properties.received_bytes, tcp.connection_properties.sent_bytes = 5, 6
    tcp.common_properties.duration.FromTimedelta(dt.timedelta(seconds=2))
    (conn,) = entry_bags(message, {})
    v = http.values
    assert (v["request.method"], v["request.url_path"], v["request.query_params"]) == (
        "POST", "/cart", {"x": "1"})
    assert (v["response.code"], v["request.size"], v["request.total_size"]) == (503, 20, 120)
    assert (v["response.size"], v["response.total_size"]) == (7, 57)
    assert v["response.duration"] == dt.timedelta(milliseconds=12)
    assert v["response.time"] == dt.datetime(2026, 11, 30, 0, 0, 0, 12000,
                                             tzinfo=dt.timezone.utc)
    assert v["context.proxy_error_code"] == "UH"
    assert v["source.ip"] == ipaddress.ip_address("10.0.0.1")
    assert v["destination.port"] == 8080
    assert v["context.reporter.uid"] == "node-1"
    assert (conn.values["context.protocol"], conn.values["connection.received.bytes"],
            conn.values["connection.sent.bytes"]) == ("tcp", 5, 6)
    assert conn.values["connection.duration"] == dt.timedelta(seconds=2)


def test_lua_mode_entries_say_whether_the_filter_asked_the_hub() -> None:
    message = als_pb2.StreamAccessLogsMessage()
    hit, miss = http_entry("/a", 200), http_entry("/b", 200)
    for entry in (hit, miss):
        entry.common_properties.custom_tags["mixerhub.mode"] = "lua"
    miss.common_properties.metadata.filter_metadata["mixerhub"].CopyFrom(
        struct_pb2.Struct(fields={"cache_miss": struct_pb2.Value(bool_value=True)}))
    message.http_logs.log_entry.extend([hit, miss])
    bags = entry_bags(message, {})
    assert [b.values["check.cache_hit"] for b in bags] == [True, False]


async def test_access_log_stream_counts_entries_and_uses_the_first_identifier(capture) -> None:
    hub, policy = capture
    first = als_pb2.StreamAccessLogsMessage()
    first.identifier.node.id = "sidecar~10.0.0.2"
    first.http_logs.log_entry.append(http_entry("/1", 200))
    second = als_pb2.StreamAccessLogsMessage()
    second.http_logs.log_entry.extend([http_entry("/2", 200), http_entry("/3", 404)])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.grpc.port}") as channel:
        await als_pb2_grpc.AccessLogServiceStub(channel).StreamAccessLogs(
            iter([first, second]))
    assert [b.values["request.path"] for b in policy.reports] == ["/1", "/2", "/3"]
    assert {b.values["context.reporter.uid"] for b in policy.reports} == {"sidecar~10.0.0.2"}
    metrics = await scrape(hub.http.port)
    assert metrics['mixerhub_reports_total{source="envoy_als"}'] == 3


async def test_v1_check_json_and_line_forms(tmp_path: Path) -> None:
    hub = await start_hub(tmp_path, POLICY.read_text())
    url = f"http://127.0.0.1:{hub.http.port}/v1/check"
    try:
        async with ClientSession() as client:
            body = {"attributes": {"request.headers": {"x-user": "mallory"}}}
            async with client.post(url, json=body) as r:
                assert r.status == 200
                verdict = await r.json()
            async with client.post(url, json=body,
                                   headers={"accept": "text/x-mixerhub-verdict"}) as r:
                lines = await r.text()
            async with client.post(url, json={"attributes": {"request.size": "big"}}) as r:
                assert r.status == 400
                error = await r.json()
            async with client.post(url, data=b"{not json") as r:
                assert r.status == 400
            greedy = {"attributes": {"request.headers": {"x-user": "greedy"}}}
            async with client.post(url, json=greedy,
                                   headers={"accept": "text/x-mixerhub-verdict"}) as r:
                charged = await r.text()
    finally:
        await hub.stop()
    assert verdict["status"] == {"code": 7, "message": "mallory is not welcome here"}
    assert verdict["http_status"] == 403
    assert verdict["referenced"] == ["request.headers[x-user]"]
    head = lines.splitlines()[:5]
    assert head[:2] == ["code\t7", "http\t403"] and head[3:] == ["uses\t999", "cache\t1"]
    # the hub's own cache answered the second call: what is left of the denier's 5 s
    assert 4000 <= int(head[2].split("\t")[1]) <= 5000
    assert "ref\trequest.headers\tx-user" in lines.splitlines()
    assert lines.endswith("body\tmallory is not welcome here")
    assert "request.size" in error["error"] and error["code"] == "attribute_json_error"
    assert "cache\t0" in charged.splitlines()  # it charged a quota: never reuse it


@pytest.mark.parametrize("mode", ["ext_authz", "lua"])
@pytest.mark.parametrize("extra", [{}, {"fail_open": True, "ratelimit": True,
                                        "attributes": {"destination.service.host": "r.svc",
                                                       "destination.port": "9080"}}])
def test_envoy_accepts_every_bootstrap_we_print(tmp_path: Path, mode: str,
                                                extra: dict) -> None:
    opts = EnvoyOptions(hub="127.0.0.1:9091", hub_http="127.0.0.1:9093",
                        listen="127.0.0.1:10000", upstream="127.0.0.1:8080", mode=mode, **extra)
    path = tmp_path / "envoy.yaml"
    path.write_text(render(opts))
    done = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_envoy_config_cli_refuses_bad_input() -> None:
    from mixerhub.cli import main

    assert main(["envoy-config", "--hub", "h:1", "--listen", "l:2", "--upstream", "u:3",
                 "--mode", "lua"]) == 2  # lua needs --hub-http
    assert main(["envoy-config", "--hub", "h:1", "--listen", "l:2", "--upstream", "u:3",
                 "--attribute", "destination.port=eighty"]) == 2


QUOTASPECS = """
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpec
metadata: {name: reviews-spec, namespace: default}
spec:
  rules:
  - match:
    - clause: {request.path: {prefix: /reviews/}}
    quotas: [{quota: per-user, charge: 1}]
---
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpecBinding
metadata: {name: reviews-binding, namespace: default}
spec:
  services: [{name: reviews, namespace: default}]
  quotaSpecs: [{name: reviews-spec}]
"""


async def test_ext_authz_charges_the_quotas_bound_to_the_destination_service(
        tmp_path: Path) -> None:
    # greedy's quota (2 per minute, policy.yaml). With QuotaSpecs in the config, a caller
    # that names no quotas is charged only what the specs bound to its service ask for;
    # the quota's own rule then decides which handler allocates it.
    hub = await start_hub(tmp_path, POLICY.read_text(), **{"specs.yaml": QUOTASPECS})
    ids = itertools.count()
    try:
        async def status(path: str, service: str) -> int:
            ctx = context()
            ctx.request.http.path = path
            ctx.request.http.headers["x-user"] = "greedy"
            ctx.request.http.id = f"req-{next(ids)}"  # the quota deduplication id
            ctx.context_extensions["destination.service.host"] = service
            reply = await authz_check(hub, external_auth_pb2.CheckRequest(attributes=ctx))
            return reply.denied_response.status.code or 200

        bound = "reviews.default.svc.cluster.local"
        assert [await status("/reviews/1", bound) for _ in range(3)] == [200, 200, 429]
        # exhausted, yet not charged: the spec's match does not apply / nothing is bound
        assert await status("/other", bound) == 200
        assert await status("/reviews/1", "ratings.default.svc.cluster.local") == 200
    finally:
        await hub.stop()
