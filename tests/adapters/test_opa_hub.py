"""The opa adapter inside a hub: verdicts cached by the attributes the instance read, fail
policies with OPA stopped (counted), config errors at load, `validate` offline."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mixerhub.app import Hub, Settings
from mixerhub.config.errors import ConfigErrors
from mixerhub.config.loader import load_config
from mixerhub.plugins import load_plugins
from mixerhub.proxy_filter.mixer_client import MixerClient
from tests.adapters.opa_tokens import quick_start_policy, token
from tests.conftest import scrape
from tests.services.opa import OpaServer

# The instance docs/adapters/opa.md shows for OPA-Envoy policies.
ENVOY_INSTANCE = """
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: envoy-request, namespace: istio-system}
spec:
  compiledTemplate: authorization
  params:
    subject:
      user: source.principal | ""
    action:
      method: request.method | "GET"
      path: request.path | "/"
      properties:
        headers.authorization: request.headers["authorization"] | ""
"""


def handler(name: str, params: str) -> str:
    return f"""
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: {name}, namespace: istio-system}}
spec:
  compiledAdapter: opa
  params:
{textwrap.indent(params.strip(), "    ")}
"""


def rule(name: str, handler_name: str, match: str, extra: str = "") -> str:
    return f"""
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: {name}, namespace: istio-system}}
spec:
  match: '{match}'
  {extra}
  actions: [{{handler: {handler_name}, instances: [envoy-request]}}]
"""


async def started(tmp_path: Path, *docs: str, cache_size: int = 0) -> tuple[Hub, MixerClient]:
    config = tmp_path / "opa.yaml"
    config.write_text("---".join(docs))
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(config),),
                       watch=False, cache_size=cache_size))
    await hub.start()
    return hub, MixerClient(f"127.0.0.1:{hub.grpc.port}")


def embedded_quick_start() -> str:
    modules = textwrap.indent(quick_start_policy(), "    ")
    return handler("authz", f"""
checkMethod: data.envoy.authz.allow
inputShape: envoy
cachingInterval: 10s
cachingUseCount: 100
policy:
- |
{modules}""")


async def test_verdicts_are_cached_by_the_attributes_the_instance_read(tmp_path: Path) -> None:
    hub, client = await started(tmp_path, embedded_quick_start(), ENVOY_INSTANCE,
                                rule("authz", "authz", "true"), cache_size=100)
    bearer = f"Bearer {token('guest')}"
    ask = {"request.method": "GET", "request.path": "/people",
           "request.headers": {"authorization": bearer, "x-request-id": "1"}}
    try:
        first = await client.check(ask)
        second = await client.check({**ask, "request.headers": {"authorization": bearer,
                                                                "x-request-id": "2"}})
        samples = await scrape(hub.http.port)
    finally:
        await client.close()
        await hub.stop()
    assert first.verdict.ok and second.verdict.ok
    assert first.verdict.valid_use_count == 100
    names = sorted({r.notation() for r in first.verdict.references})
    assert names == sorted(["request.method", "request.path", "request.headers[authorization]",
                            "-source.principal"]), names
    assert samples["mixerhub_decision_cache_hits_total"] == 1


async def test_opa_stopped_each_rule_fails_as_configured_and_is_counted(
        own_opa: OpaServer, tmp_path: Path) -> None:
    """failPolicy wins; without one the handler's failClose decides; counted either way."""
    remote = f"url: {own_opa.url}\npolicyPath: envoy/authz/allow"
    docs = [handler("lenient", remote + "\nfailClose: false"),
            handler("strict", remote + "\nfailClose: true"), ENVOY_INSTANCE,
            rule("open-wins", "strict", 'request.path == "/a"', "failPolicy: open"),
            rule("closed-wins", "lenient", 'request.path == "/b"', "failPolicy: closed"),
            rule("fail-close", "strict", 'request.path == "/c"'),
            rule("fail-open", "lenient", 'request.path == "/d"')]
    own_opa.request("PUT", "/v1/policies/quick", quick_start_policy().encode())
    hub, client = await started(tmp_path, *docs)
    bearer = {"authorization": f"Bearer {token('guest')}"}

    async def code(path: str) -> int:
        result = await client.check({"request.path": path, "request.headers": bearer})
        return result.verdict.code

    try:
        up = [await code(p) for p in ("/a", "/b", "/c", "/d")]
        own_opa.stop()
        down = [await code(p) for p in ("/a", "/b", "/c", "/d")]
        samples = await scrape(hub.http.port)
    finally:
        await client.close()
        await hub.stop()
    assert up == [7, 7, 7, 7]  # the paths are not /people: the policy denies all four
    assert down == [0, 14, 14, 0]
    failures = 'mixerhub_rule_failures_total{{policy="{}",rule="{}.istio-system"}}'
    assert samples[failures.format("open", "open-wins")] == 1
    assert samples[failures.format("closed", "closed-wins")] == 1
    assert samples[failures.format("closed", "fail-close")] == 1
    assert samples[failures.format("open", "fail-open")] == 1
    errors = 'mixerhub_adapter_errors_total{{handler="{}.handler.istio-system"}}'
    assert samples[errors.format("strict")] == 2 and samples[errors.format("lenient")] == 2


def test_a_missing_builtin_is_a_config_error_naming_file_handler_and_builtin(
        tmp_path: Path) -> None:
    config = tmp_path / "cidr.yaml"
    config.write_text(handler("authz", """
checkMethod: data.a.allow
policy:
- |
  package a
  allow if net.cidr_contains("10.0.0.0/8", input.subject.user)
""") + "---" + ENVOY_INSTANCE + "---" + rule("authz", "authz", "true"))
    with pytest.raises(ConfigErrors) as err:
        load_config([config], load_plugins())
    assert any("cidr.yaml" in e and "handler/authz" in e and "net.cidr_contains" in e
               and "not available in the embedded Rego engine" in e for e in err.value.errors), \
        err.value.errors


def test_validate_never_contacts_the_opa_server(tmp_path: Path) -> None:
    config = tmp_path / "remote.yaml"
    config.write_text(handler("authz", "url: http://opa.invalid:8181\n"
                                       "policyPath: envoy/authz/allow\n"
                                       "policy: ['package envoy.authz\n\nallow := true']")
                      + "---" + ENVOY_INSTANCE + "---" + rule("authz", "authz", "true"))
    out = subprocess.run([sys.executable, "-m", "mixerhub", "validate", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("ok:")
