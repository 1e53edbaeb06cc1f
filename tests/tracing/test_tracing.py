"""hub/tracing.py in process: off costs no import, sampling follows the caller, B3 maps onto
traceparent, shutdown is bounded, and the serve flags reach the settings."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from mixerhub.api.mixer.v1 import check_pb2
from mixerhub.app import Hub, Settings
from mixerhub.attributes.compression import Encoder
from mixerhub.cli import _with_tracing, build_parser
from mixerhub.tracing import Tracing, b3_traceparent
from tests.tracing.receiver import Receiver

QUICKSTART = str(Path(__file__).resolve().parents[2] / "examples" / "quickstart")
TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

# Serves one check of each kind (Mixer gRPC, ext_authz, /v1/check) from a hub built with
# the given settings, then prints the OpenTelemetry modules loaded in the process.
SERVE_ONE_OF_EACH = """
import asyncio, json, sys
import aiohttp, grpc
from envoy.service.auth.v3 import external_auth_pb2
from mixerhub.api.mixer.v1 import check_pb2
from mixerhub.app import Hub, Settings

async def main(endpoint):
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(sys.argv[1],),
                       watch=False, otlp_endpoint=endpoint))
    await hub.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.grpc.port}") as ch:
            await ch.unary_unary("/istio.mixer.v1.Mixer/Check")(
                check_pb2.CheckRequest().SerializeToString(),
                metadata=[("traceparent", "00-%s-%s-01")])
            await ch.unary_unary("/envoy.service.auth.v3.Authorization/Check")(
                external_auth_pb2.CheckRequest().SerializeToString())
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{hub.http.port}/v1/check"
            async with session.post(url, json={"attributes": {}}) as response:
                assert response.status == 200
    finally:
        await hub.stop()

asyncio.run(main(sys.argv[2]))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry"))))
""" % (TRACE, SPAN)


# redis-py (8.x) imports OpenTelemetry's metrics SDK for its own optional instrumentation
# whenever that is installed, and the redisquota plugin imports redis: that much is not
# the hub's doing, so it is the baseline the hub must add nothing to.
REDIS_ALONE = """
import json, sys
import redis.asyncio
print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry"))))
"""


def loaded(script: str, *argv: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", script, *argv],
                         capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def loaded_after_serving(endpoint: str) -> set[str]:
    return loaded(SERVE_ONE_OF_EACH, QUICKSTART, endpoint)


def test_tracing_off_imports_no_opentelemetry() -> None:
    assert loaded_after_serving("") - loaded(REDIS_ALONE) == set()


def test_tracing_on_does_import_it() -> None:
    """The control: the probe above would see OpenTelemetry if the hub loaded it."""
    receiver = Receiver().start()
    try:
        on = loaded_after_serving(f"127.0.0.1:{receiver.port}")
    finally:
        receiver.stop()
    assert "opentelemetry.sdk.trace" in on - loaded(REDIS_ALONE)


@pytest.fixture
async def traced_hub(request: pytest.FixtureRequest, receiver: Receiver
                     ) -> AsyncIterator[Hub]:
    """A hub with tracing to ``receiver`` at the sample ratio the test's param names."""
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(QUICKSTART,),
                       watch=False, otlp_endpoint=f"127.0.0.1:{receiver.port}",
                       trace_sample_ratio=request.param))
    await hub.start()
    try:
        yield hub
    finally:
        if hub.tracing is not None and hub._ready:
            await hub.stop()


async def check(hub: Hub, traceparent: str | None, path: str) -> None:
    encoder = Encoder()
    request = check_pb2.CheckRequest(attributes=encoder.encode({"request.path": path}),
                                     global_word_count=encoder.global_word_count)
    metadata = [("traceparent", traceparent)] if traceparent else []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.grpc.port}") as channel:
        await channel.unary_unary("/istio.mixer.v1.Mixer/Check")(
            request.SerializeToString(), metadata=metadata)


@pytest.mark.parametrize("traced_hub", [0.0], indirect=True)
async def test_ratio_zero_records_only_what_the_caller_sampled(traced_hub: Hub,
                                                               receiver: Receiver) -> None:
    await check(traced_hub, None, "/root")
    await check(traced_hub, f"00-{TRACE}-{SPAN}-01", "/sampled")
    await traced_hub.stop()  # flushes
    (span,) = receiver.spans("mixerhub.check")
    assert (span.trace_id, span.parent_span_id) == (TRACE, SPAN)


@pytest.mark.parametrize("traced_hub", [1.0], indirect=True)
async def test_a_callers_no_is_followed_at_ratio_one(traced_hub: Hub,
                                                     receiver: Receiver) -> None:
    await check(traced_hub, f"00-{TRACE}-{SPAN}-00", "/not-sampled")
    await check(traced_hub, None, "/root")
    await traced_hub.stop()
    (span,) = receiver.spans("mixerhub.check")
    assert span.parent_span_id == "" and span.trace_id != TRACE  # the hub's own root


async def test_shutdown_gives_up_on_a_hung_collector_within_its_bound() -> None:
    stalled = Receiver(stall=True).start()
    try:
        tracing = Tracing(f"127.0.0.1:{stalled.port}")
        with tracing.server_span("mixerhub.check", "mixer", None):
            pass
        started = time.monotonic()
        finished = await tracing.shutdown(timeout=1.0)
        elapsed = time.monotonic() - started
    finally:
        stalled.stop()
    assert not finished
    assert elapsed < 2.0


async def test_shutdown_reports_a_completed_flush(receiver: Receiver) -> None:
    tracing = Tracing(f"127.0.0.1:{receiver.port}")
    with tracing.server_span("mixerhub.report", "mixer", None, **{"mixerhub.records": 4}):
        pass
    assert await tracing.shutdown(timeout=10.0)
    (span,) = receiver.spans()
    assert span.attributes["mixerhub.records"] == 4


@pytest.mark.parametrize(("headers", "expected"), [
    ({"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"},
     f"00-{TRACE}-{SPAN}-01"),
    ({"x-b3-traceid": "A3CE929D0E0E4736", "x-b3-spanid": SPAN, "x-b3-sampled": "0"},
     f"00-0000000000000000a3ce929d0e0e4736-{SPAN}-00"),  # 64-bit id, padded; not sampled
    ({"x-b3-traceid": TRACE, "x-b3-spanid": SPAN}, f"00-{TRACE}-{SPAN}-01"),  # deferred
    ({"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "0", "x-b3-flags": "1"},
     f"00-{TRACE}-{SPAN}-01"),  # debug wins
    ({"b3": f"{TRACE}-{SPAN}-1-05e3ac9a4f6e3b90"}, f"00-{TRACE}-{SPAN}-01"),
    ({"b3": f"{TRACE}-{SPAN}-0"}, f"00-{TRACE}-{SPAN}-00"),
    ({"b3": "0"}, None),  # a decision without ids
    ({"x-b3-traceid": TRACE}, None),
    ({"x-b3-traceid": "not-hex-at-all", "x-b3-spanid": SPAN}, None),
    ({"x-b3-traceid": "0" * 32, "x-b3-spanid": SPAN}, None),  # all-zero ids are invalid
    ({}, None),
])
def test_b3_headers_as_traceparent(headers: dict[str, str], expected: str | None) -> None:
    assert b3_traceparent(headers) == expected


def serve_args(*argv: str) -> Settings:
    args = build_parser().parse_args(["serve", *argv])
    return _with_tracing(Settings(), args)  # type: ignore[no-any-return]


def test_flags_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    off = serve_args()
    assert (off.otlp_endpoint, off.trace_sample_ratio) == ("", 1.0)  # OTEL_* alone: off
    on = serve_args("--otlp-endpoint", "otel:4317", "--trace-sample-ratio", "0.25")
    assert (on.otlp_endpoint, on.trace_sample_ratio) == ("otel:4317", 0.25)
    assert serve_args("--tracing").otlp_endpoint == "http://collector:4317"
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert serve_args("--tracing").otlp_endpoint == "localhost:4317"


def test_sample_ratio_outside_zero_to_one_is_refused(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    with pytest.raises(SystemExit):
        serve_args("--trace-sample-ratio", "1.5")
    assert "1.5 is not between 0 and 1" in capsys.readouterr().err


def test_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXERHUB_OTLP_ENDPOINT", "127.0.0.1:4317")
    assert serve_args().otlp_endpoint == "127.0.0.1:4317"


async def test_a_hung_collector_does_not_hold_the_hubs_stop() -> None:
    stalled = Receiver(stall=True).start()
    try:
        hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0",
                           otlp_endpoint=f"127.0.0.1:{stalled.port}"))
        await hub.start()
        await check(hub, None, "/")
        started = time.monotonic()
        await asyncio.wait_for(hub.stop(), 30)
        assert time.monotonic() - started < 8  # SHUTDOWN_SECONDS (5) and the servers' stop
    finally:
        stalled.stop()
