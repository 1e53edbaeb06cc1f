"""mTLS on the gRPC port and the HTTP API: a client without a certificate is refused; a
verified certificate's identity is `context.reporter.principal` of every check and report
on the connection, so a rule can deny on it; the admin port answers probes in plain
HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from mixerhub.app import Hub, Settings
from tests.conftest import CapturingPolicy, scrape
from tests.tls.conftest import INTRUDER_ID, PROXY_ID, Certs

PRINCIPAL = "context.reporter.principal"
DENY_INTRUDER = f"""
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: deny-intruder, namespace: istio-system}}
spec:
  compiledAdapter: denier
  params: {{status: {{code: 7, message: this proxy may not call}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: nothing, namespace: istio-system}}
spec: {{compiledTemplate: checknothing, params: {{}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: only-known-proxies, namespace: istio-system}}
spec:
  match: context.reporter.principal | "" == "{INTRUDER_ID}"
  actions: [{{handler: deny-intruder, instances: [nothing]}}]
"""


def tls_settings(certs: Certs, **extra: object) -> Settings:
    return Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", tls_cert=certs.path("server.pem"),
                    tls_key=certs.path("server-key.pem"),
                    tls_client_ca=certs.path("ca.pem"), **extra)  # type: ignore[arg-type]


@pytest.fixture
async def mtls_hub(certs: Certs) -> AsyncIterator[Hub]:
    hub = Hub(tls_settings(certs, admin="127.0.0.1:0"))
    await hub.start()
    hub.policy = CapturingPolicy()
    yield hub
    await hub.stop()


@pytest.fixture
async def denying_hub(certs: Certs, tmp_path: Path) -> AsyncIterator[Hub]:
    config = tmp_path / "policy.yaml"
    config.write_text(DENY_INTRUDER)
    hub = Hub(tls_settings(certs, config=(str(config),), watch=False))
    await hub.start()
    yield hub
    await hub.stop()


async def test_a_grpc_client_without_a_certificate_is_refused(mtls_hub: Hub,
                                                              certs: Certs) -> None:
    client = certs.mixer_client(mtls_hub.grpc.port, None)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.check({"request.path": "/"}, timeout=3)
    finally:
        await client.close()
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert mtls_hub.policy.checks == []  # type: ignore[attr-defined]


async def test_a_plaintext_grpc_client_is_refused(mtls_hub: Hub) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mtls_hub.grpc.port}") as channel:
        call = channel.unary_unary("/istio.mixer.v1.Mixer/Check")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(b"", timeout=3)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_an_http_client_without_a_certificate_is_refused(
        mtls_hub: Hub, certs: Certs, http_session: aiohttp.ClientSession) -> None:
    url = f"https://127.0.0.1:{mtls_hub.http.port}/v1/check"
    with pytest.raises(aiohttp.ClientError):
        async with http_session.post(url, json={"attributes": {}},
                                     ssl=certs.ssl_context(None)) as response:
            await response.read()
    assert mtls_hub.policy.checks == []  # type: ignore[attr-defined]


async def test_the_certificate_identity_is_the_reporter_principal_of_checks_and_reports(
        mtls_hub: Hub, certs: Certs, http_session: aiohttp.ClientSession) -> None:
    policy: CapturingPolicy = mtls_hub.policy  # type: ignore[assignment]
    proxy = certs.mixer_client(mtls_hub.grpc.port, "proxy")
    cn_only = certs.mixer_client(mtls_hub.grpc.port, "cn-only")
    try:
        # A client cannot claim another identity: the certificate's replaces what it sent.
        await proxy.check({"request.path": "/a", PRINCIPAL: INTRUDER_ID})
        await proxy.report([{"request.path": "/r1"}, {"request.path": "/r2"}])
        await cn_only.check({"request.path": "/b"})
    finally:
        await proxy.close()
        await cn_only.close()
    url = f"https://127.0.0.1:{mtls_hub.http.port}/v1/check"
    async with http_session.post(url, json={"attributes": {"request.path": "/c"}},
                                 ssl=certs.ssl_context("intruder")) as response:
        assert response.status == 200
    principals = [bag.values.get(PRINCIPAL) for bag in policy.checks]
    assert principals == [PROXY_ID, "cn-only", INTRUDER_ID]
    assert [bag.values.get(PRINCIPAL) for bag in policy.reports] == [PROXY_ID, PROXY_ID]


async def test_a_rule_denies_on_the_principal_over_grpc_and_http(
        denying_hub: Hub, certs: Certs, http_session: aiohttp.ClientSession) -> None:
    proxy = certs.mixer_client(denying_hub.grpc.port, "proxy")
    intruder = certs.mixer_client(denying_hub.grpc.port, "intruder")
    try:
        allowed = await proxy.check({"request.path": "/"})
        denied = await intruder.check({"request.path": "/", PRINCIPAL: PROXY_ID})
    finally:
        await proxy.close()
        await intruder.close()
    url = f"https://127.0.0.1:{denying_hub.http.port}/v1/check"
    codes = {}
    for name in ("proxy", "intruder"):
        async with http_session.post(url, json={"attributes": {}},
                                     ssl=certs.ssl_context(name)) as response:
            codes[name] = (await response.json())["status"]["code"]
    assert allowed.verdict.code == 0
    assert (denied.verdict.code, denied.verdict.message) == (7, "this proxy may not call")
    assert codes == {"proxy": 0, "intruder": 7}


async def test_probes_and_metrics_answer_on_the_plain_admin_port(
        mtls_hub: Hub, http_session: aiohttp.ClientSession) -> None:
    assert mtls_hub.admin is not None
    base = f"http://127.0.0.1:{mtls_hub.admin.port}"
    for path in ("/healthz", "/readyz", "/metrics", "/debug/config"):
        async with http_session.get(base + path) as response:
            assert response.status == 200, path
    async with http_session.post(base + "/v1/check", json={"attributes": {}}) as response:
        assert response.status in (404, 405)  # the API is only on the mTLS port
    samples = await scrape(mtls_hub.admin.port)
    assert samples["mixerhub_tls_cert_expiry_timestamp_seconds"] > 0


async def test_without_tls_flags_the_ports_stay_plaintext_and_nothing_is_stamped(
        hub: Hub, http_session: aiohttp.ClientSession) -> None:
    hub.policy = CapturingPolicy()
    url = f"http://127.0.0.1:{hub.http.port}/v1/check"
    async with http_session.post(url, json={"attributes": {PRINCIPAL: "anything"}}) as r:
        assert r.status == 200
    assert hub.tls is None and hub.admin is None
    assert hub.policy.checks[0].values[PRINCIPAL] == "anything"


async def test_debug_pages_are_not_routed_on_a_listener_outside_loopback() -> None:
    from mixerhub.server.http import debug_allowed

    assert debug_allowed("127.0.0.1", False) and debug_allowed("::1", False)
    assert debug_allowed("localhost", False)
    assert not debug_allowed("0.0.0.0", False) and not debug_allowed("10.1.2.3", False)
    assert debug_allowed("0.0.0.0", True)


def test_a_key_that_does_not_match_the_certificate_stops_serve(certs: Certs) -> None:
    from mixerhub.tls import TlsError

    settings = Settings(grpc="127.0.0.1:0", http="127.0.0.1:0",
                        tls_cert=certs.path("server.pem"), tls_key=certs.path("proxy-key.pem"))
    with pytest.raises(TlsError, match="is not the key of the certificate"):
        Hub(settings)


def test_half_a_tls_pair_is_refused_by_the_cli(certs: Certs) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mixerhub", "serve", "--grpc", "127.0.0.1:0", "--http",
         "127.0.0.1:0", "--tls-client-ca", certs.path("ca.pem")],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "TLS needs both --tls-cert and --tls-key" in out.stderr


async def test_the_debug_page_on_the_api_port_is_json(mtls_hub: Hub, certs: Certs,
                                                      http_session: aiohttp.ClientSession
                                                      ) -> None:
    url = f"https://127.0.0.1:{mtls_hub.http.port}/debug/config"
    async with http_session.get(url, ssl=certs.ssl_context("proxy")) as response:
        body = json.loads(await response.text())
    assert body["note"] == "no config: all allowed"


async def test_tls_without_a_client_ca_serves_any_client_and_stamps_nothing(
        certs: Certs, http_session: aiohttp.ClientSession) -> None:
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0",
                       tls_cert=certs.path("server.pem"), tls_key=certs.path("server-key.pem")))
    await hub.start()
    hub.policy = CapturingPolicy()
    client = certs.mixer_client(hub.grpc.port, None)
    try:
        await client.check({PRINCIPAL: "claimed"})
        url = f"https://127.0.0.1:{hub.http.port}/v1/check"
        async with http_session.post(url, json={"attributes": {}},
                                     ssl=certs.ssl_context(None)) as response:
            status = response.status
    finally:
        await client.close()
        await hub.stop()
    assert status == 200
    assert [bag.values.get(PRINCIPAL) for bag in hub.policy.checks] == ["claimed", None]
