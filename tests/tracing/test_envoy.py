"""Real Envoy tracing with OTLP into the same receiver as the hub (the setup of
docs/tracing.md): the hub's check span is a child of Envoy's span of the ext_authz call,
in the trace of the client's request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import ClientSession

from mixerhub.app import Hub, Settings
from mixerhub.envoy.bootstrap import EnvoyOptions, render
from tests.envoy.conftest import Upstream, eventually, options, running_envoy
from tests.envoy.conftest import upstream  # noqa: F401 - fixture
from tests.tracing.receiver import Receiver

QUICKSTART = str(Path(__file__).resolve().parents[2] / "examples" / "quickstart")
CLIENT_TRACE, CLIENT_SPAN = "5e1c9a0d3b7f42e88c1f6a2b9d4e7c31", "a1b2c3d4e5f60718"


def with_tracing(bootstrap: str, collector_port: int) -> str:
    """Envoy's own OpenTelemetry tracer on the listener, exporting to the collector."""
    config = yaml.safe_load(bootstrap)
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    manager["typed_config"]["tracing"] = {
        "random_sampling": {"value": 100},
        "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": "otel-collector"},
                             "timeout": "0.250s"},
            "service_name": "envoy-ingress"}}}
    address = {"socket_address": {"address": "127.0.0.1", "port_value": collector_port}}
    config["static_resources"]["clusters"].append({
        "name": "otel-collector", "type": "STATIC",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                         "HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": "otel-collector", "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": address}}]}]}})
    return yaml.safe_dump(config)


@pytest.fixture
def traced_envoy_bootstrap(monkeypatch: pytest.MonkeyPatch, receiver: Receiver
                           ) -> Iterator[None]:
    def render_traced(opts: EnvoyOptions) -> str:
        return with_tracing(render(opts), receiver.port)

    monkeypatch.setattr("tests.services.envoy.render", render_traced)
    yield


async def test_hub_span_is_a_child_of_envoys_ext_authz_span(
        receiver: Receiver, upstream: Upstream, traced_envoy_bootstrap: None) -> None:  # noqa: F811
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(QUICKSTART,),
                       watch=False, otlp_endpoint=f"127.0.0.1:{receiver.port}"))
    await hub.start()
    try:
        async with running_envoy(options(hub, upstream, "ext_authz")) as envoy:
            headers = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
            async with ClientSession() as session:
                url = f"http://127.0.0.1:{envoy.port}/ratings/1"
                async with session.get(url, headers=headers) as response:
                    assert response.status == 200
            # Envoy exports every 5 s; the hub at its stop.
            await eventually(lambda: receiver.spans("ingress"), timeout=30)
    finally:
        await hub.stop()
    (ingress,) = receiver.spans("ingress")
    (call,) = [s for s in receiver.spans() if "Authorization.Check" in s.name]
    (check,) = receiver.spans("mixerhub.check")
    assert ingress.resource["service.name"] == "envoy-ingress"
    assert (ingress.trace_id, ingress.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    assert (call.trace_id, call.parent_span_id) == (CLIENT_TRACE, ingress.span_id)
    assert (check.trace_id, check.parent_span_id) == (CLIENT_TRACE, call.span_id)
    assert check.attributes["mixerhub.source"] == "envoy"
    assert check.resource["service.name"] == "mixerhub"
