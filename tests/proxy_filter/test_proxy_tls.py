"""`mixerhub proxy --hub-tls-*` against a hub serving mutual TLS, both as real processes
(`mixerhub serve --tls-cert --tls-key --tls-client-ca`, `mixerhub proxy`), in front of a
real upstream. The hub's policy denies every caller but the proxy's certificate identity,
so a request that passes proves the hub saw it as `context.reporter.principal`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mixerhub.certs import server_cert
from mixerhub.proxy_filter.gate import Gate, GateOptions
from mixerhub.proxy_filter.mixer_client import hub_tls_from
from tests.conftest import scrape
from tests.mounts import KubeMount
from tests.proxy_filter.conftest import POLICY, eventually, free_port
from tests.proxy_filter.test_proxy_cli import proxy_process
from tests.tls.conftest import PROXY_ID, Certs

SERVER_NAME = "hub.mesh.test"  # the only name in the "named" server certificate
ONLY_THE_PROXY = f"""
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: not-the-proxy, namespace: istio-system}}
spec:
  compiledAdapter: denier
  params: {{status: {{code: 7, message: only the proxy may call}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: only-the-proxy, namespace: istio-system}}
spec:
  match: (context.reporter.principal | "") != "{PROXY_ID}"
  actions: [{{handler: not-the-proxy, instances: [nothing]}}]
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """ca.pem; server.pem for 127.0.0.1 and localhost, named.pem for hub.mesh.test only;
    client certificates proxy (PROXY_ID) and intruder, all from one CA."""
    certs = Certs(tmp_path_factory.mktemp("hub-certs"))
    named = server_cert(certs.ca, [SERVER_NAME])
    (certs.folder / "named.pem").write_bytes(named.cert)
    (certs.folder / "named-key.pem").write_bytes(named.key)
    return certs


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA that signed nothing the hub presents."""
    return Certs(tmp_path_factory.mktemp("other-certs"))


@contextlib.asynccontextmanager
async def hub_process(certs: Certs, tmp_path: Path, server: str = "server"
                      ) -> AsyncIterator[dict[str, int]]:
    """`mixerhub serve` with mTLS; its ports (grpc, http, admin), once it is ready."""
    config = tmp_path / "policy.yaml"
    config.write_text(POLICY.read_text() + "\n---\n" + ONLY_THE_PROXY)
    ports = {"grpc": free_port(), "http": free_port(), "admin": free_port()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mixerhub", "serve", "--config", str(config), "--no-watch",
        "--grpc", f"127.0.0.1:{ports['grpc']}", "--http", f"127.0.0.1:{ports['http']}",
        "--admin", f"127.0.0.1:{ports['admin']}", "--log-level", "warning",
        "--tls-cert", certs.path(f"{server}.pem"), "--tls-key", certs.path(f"{server}-key.pem"),
        "--tls-client-ca", certs.path("ca.pem"),
        "--record-checks", str(tmp_path / "decisions.jsonl"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await _ready(ports["admin"], proc)
        yield ports
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _ready(admin_port: int, proc: asyncio.subprocess.Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    async with aiohttp.ClientSession() as s:
        while loop.time() < deadline and proc.returncode is None:
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(f"http://127.0.0.1:{admin_port}/readyz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError("the hub did not become ready")


def tls_flags(certs: Certs, client: str | None = "proxy", ca: Certs | None = None) -> list[str]:
    flags = ["--hub-tls-ca", (ca or certs).path("ca.pem")]
    if client is not None:
        flags += ["--hub-tls-cert", certs.path(f"{client}.pem"),
                  "--hub-tls-key", certs.path(f"{client}-key.pem")]
    return flags


async def get(port: int, path: str = "/echo") -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.text()


def log_events(text: str) -> dict[str, dict]:
    """The proxy's JSON log lines by event (the first of each)."""
    events: dict[str, dict] = {}
    for line in text.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            events.setdefault(record.get("event", ""), record)
    return events


async def stderr_of(proc: asyncio.subprocess.Process) -> str:
    proc.kill()
    await proc.wait()
    return (await proc.stderr.read()).decode()  # type: ignore[union-attr]


async def test_the_hub_sees_the_proxys_certificate_identity(certs, upstream, tmp_path):
    async with hub_process(certs, tmp_path) as hub, \
            proxy_process(hub["grpc"], upstream.url, *tls_flags(certs)) as (port, metrics, _):
        assert (await get(port))[0] == 200
        await eventually(lambda: _decisions(tmp_path) != [])
        samples = await scrape(metrics)
        await eventually_reported(hub["admin"])
    assert samples['mixerhub_proxy_requests_total{outcome="allowed"}'] == 1
    assert len(upstream.seen) == 1
    attributes = _decisions(tmp_path)[0]["attributes"]
    assert attributes["context.reporter.principal"] == PROXY_ID
    assert attributes["request.url_path"] == "/echo"


async def test_another_identity_is_denied_even_claiming_the_proxys(certs, upstream, tmp_path):
    claim = ["--attribute", f"context.reporter.principal={PROXY_ID}"]
    async with hub_process(certs, tmp_path) as hub, \
            proxy_process(hub["grpc"], upstream.url, *tls_flags(certs, "intruder"),
                          *claim) as (port, _, _proc):
        assert await get(port) == (403, "only the proxy may call")
    assert upstream.seen == []


@pytest.mark.parametrize(("policy", "status"), [("closed", 503), ("open", 200)])
async def test_a_proxy_without_a_client_certificate_is_refused(certs, upstream, tmp_path,
                                                               policy, status):
    extra = ["--fail-open"] if policy == "open" else []
    async with hub_process(certs, tmp_path) as hub, \
            proxy_process(hub["grpc"], upstream.url, *tls_flags(certs, None),
                          *extra) as (port, metrics, _):
        code, body = await get(port)
        samples = await scrape(metrics)
        hub_samples = await scrape(hub["admin"])
    assert code == status
    if policy == "closed":
        assert body.startswith("policy check unavailable: UNAVAILABLE")
    assert len(upstream.seen) == (1 if policy == "open" else 0)
    assert samples[f'mixerhub_proxy_fail_policy_total{{policy="{policy}"}}'] == 1
    assert samples['mixerhub_proxy_hub_calls_total{result="error",rpc="check"}'] >= 1
    assert not any(k.startswith("mixerhub_checks_total") and v for k, v in hub_samples.items())


async def test_a_proxy_trusting_the_wrong_ca_fails_closed_and_says_why(certs, other_ca,
                                                                      upstream, tmp_path):
    async with hub_process(certs, tmp_path) as hub, \
            proxy_process(hub["grpc"], upstream.url, *tls_flags(certs, "proxy", ca=other_ca),
                          "--service", "reviews", hub_http=hub["http"]) as (port, _, proc):
        code, body = await get(port)
        events = log_events(await stderr_of(proc))
    assert code == 503 and upstream.seen == []
    failed = events["hub unavailable; fail policy applied"]
    assert re.search(r"(?i)handshake failed.*certificate", failed["error"]), failed
    assert failed["error"] in body
    fetch = events["quota specs not fetched; keeping the current ones"]
    assert "CERTIFICATE_VERIFY_FAILED" in fetch["error"] and fetch["url"].startswith("https:")


async def test_server_name_override_and_quotaspecs_over_https(certs, upstream, tmp_path):
    """The hub's certificate names only hub.mesh.test; the proxy reaches it by IP. Without
    --hub-tls-server-name the name check fails; with it, Check, Report and the QuotaSpecs
    fetch (HTTPS, client certificate) all work: the bound quota of 100 is enforced."""
    quota = ["--service", "reviews", "--namespace", "default"]
    async with hub_process(certs, tmp_path, server="named") as hub:
        async with proxy_process(hub["grpc"], upstream.url, *tls_flags(certs), *quota,
                                 hub_http=hub["http"]) as (port, metrics, _):
            assert (await get(port, "/api/books"))[0] == 503
            samples = await scrape(metrics)
        assert samples['mixerhub_proxy_quotaspec_fetches_total{result="error"}'] >= 1
        named = [*tls_flags(certs), "--hub-tls-server-name", SERVER_NAME, *quota]
        async with proxy_process(hub["grpc"], upstream.url, *named,
                                 hub_http=hub["http"]) as (port, metrics, _):
            statuses = [(await get(port, "/api/books"))[0] for _ in range(105)]
            samples = await scrape(metrics)
    assert samples['mixerhub_proxy_quotaspec_fetches_total{result="ok"}'] >= 1
    assert statuses.count(200) == 100 and statuses.count(429) == 5


@pytest.mark.parametrize(("flags", "message"), [
    (["--hub-tls-ca", "{ca}", "--hub-tls-cert", "{dir}/proxy.pem"],
     "--hub-tls-cert and --hub-tls-key go together"),
    (["--hub-tls-ca", "{ca}", "--hub-tls-key", "{dir}/proxy-key.pem"],
     "--hub-tls-cert and --hub-tls-key go together"),
    (["--hub-tls-cert", "{dir}/proxy.pem", "--hub-tls-key", "{dir}/proxy-key.pem"],
     "TLS to the hub needs --hub-tls-ca"),
    (["--hub-tls-server-name", SERVER_NAME], "TLS to the hub needs --hub-tls-ca"),
    (["--hub-tls-ca", "{dir}/missing.pem"], "cannot read {dir}/missing.pem"),
    (["--hub-tls-ca", "{dir}/proxy-key.pem"], "{dir}/proxy-key.pem: not a PEM CA bundle"),
    (["--hub-tls-ca", "{ca}", "--hub-tls-cert", "{dir}/proxy.pem",
      "--hub-tls-key", "{dir}/intruder-key.pem"],
     "{dir}/intruder-key.pem is not the key of the certificate in {dir}/proxy.pem"),
])
async def test_bad_tls_flags_exit_2_before_serving(certs, flags, message):
    folder = str(certs.folder)
    argv = [f.format(ca=certs.path("ca.pem"), dir=folder) for f in flags]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mixerhub", "proxy", "--listen", "127.0.0.1:0",
        "--upstream", "http://127.0.0.1:1", "--hub", "127.0.0.1:1", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2, err
    assert f"mixerhub proxy: {message.format(dir=folder)}" in err.decode(), err
    assert b"proxy serving" not in out + err


def client_secret(mount: KubeMount, certs: Certs, cert: str, key: str | None = None) -> None:
    """Update the mounted Secret with a client certificate and a key (by default its own)."""
    mount.update({"client.pem": certs.read(f"{cert}.pem"),
                  "client-key.pem": certs.read(f"{key or cert}-key.pem")})


async def test_a_rotated_client_certificate_is_used_without_a_restart(certs, upstream,
                                                                       tmp_path):
    """`mixerhub proxy` starts with a certificate the hub's policy denies; the Secret is
    updated with the allowed one, and within a reload interval requests pass."""
    secret = KubeMount(tmp_path / "secret")
    client_secret(secret, certs, "intruder")
    flags = ["--hub-tls-ca", certs.path("ca.pem"), "--hub-tls-cert", secret.path("client.pem"),
             "--hub-tls-key", secret.path("client-key.pem"), "--hub-tls-reload-interval", "0.2"]
    async with hub_process(certs, tmp_path) as hub, \
            proxy_process(hub["grpc"], upstream.url, *flags) as (port, metrics, proc):
        assert await get(port) == (403, "only the proxy may call")
        client_secret(secret, certs, "proxy")
        statuses = []
        for _ in range(150):
            statuses.append((await get(port))[0])
            if statuses[-1] == 200:
                break
            await asyncio.sleep(0.1)
        samples = await scrape(metrics)
        events = log_events(await stderr_of(proc))
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {403}
    assert samples['mixerhub_proxy_tls_reloads_total{result="ok"}'] == 1
    assert events["hub TLS files reloaded"]["mutual"] is True


async def test_a_reload_moves_the_gate_to_the_new_identity_and_keeps_it_on_bad_files(
        certs, tmp_path):
    secret = KubeMount(tmp_path / "secret")
    client_secret(secret, certs, "intruder")
    values = {"request.path": "/echo", "destination.service.name": "echo"}
    async with hub_process(certs, tmp_path) as hub:
        tls = hub_tls_from(certs.path("ca.pem"), secret.path("client.pem"),
                           secret.path("client-key.pem"))
        gate = Gate.connect(f"127.0.0.1:{hub['grpc']}", GateOptions(tls_reload_interval=0),
                            tls=tls)
        await gate.start()
        try:
            denied = await gate.check(values)
            assert (denied.allowed, denied.code) == (False, 7)
            assert gate.reload_tls() is False  # the files did not change
            # Verdicts that read the identity carry no lifetime; any other kept verdict
            # was given to the old identity and goes with it.
            assert gate.cache is not None and denied.verdict is not None
            assert gate.cache.store(dataclasses.replace(
                denied.verdict, valid_duration=dt.timedelta(seconds=60), valid_use_count=99,
                references=()), values)
            assert (await gate.check(values)).cache_hit
            old_channel = gate.client.channel
            client_secret(secret, certs, "proxy")
            assert gate.reload_tls() is True
            assert gate.client.channel is not old_channel
            allowed = await gate.check(values)
            assert allowed.allowed and not allowed.cache_hit  # the old verdicts are gone
            client_secret(secret, certs, "proxy", key="intruder")  # a key of another certificate
            assert gate.reload_tls() is False
            assert gate.reload_tls() is False  # tried once per change, not on every tick
            result = await gate.client.check(values)  # a new call, on the kept channel
            assert result.verdict.ok
            assert gate.metrics.registry.get_sample_value(
                "mixerhub_proxy_tls_reloads_total", {"result": "error"}) == 1
            assert gate.metrics.registry.get_sample_value(
                "mixerhub_proxy_tls_reloads_total", {"result": "ok"}) == 1
        finally:
            await gate.close()


def _decisions(folder: Path) -> list[dict]:
    path = folder / "decisions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def eventually_reported(admin_port: int) -> None:
    """The proxy's batched report reached the hub over the same TLS channel."""
    for _ in range(100):
        samples = await scrape(admin_port)
        if samples.get('mixerhub_reports_total{source="mixer"}', 0) >= 1:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no report arrived: {samples}")
