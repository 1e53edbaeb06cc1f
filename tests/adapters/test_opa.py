"""The opa adapter: Istio's params embedded (regopy), a real OPA server remote
(tests/services/opa.py), OPA-Envoy's input shape, and every failure path."""

from __future__ import annotations

import datetime as dt
import ipaddress
import textwrap
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from mixerhub.adapter import AdapterEnv, BackendError, Status
from mixerhub.adapters._opa_input import envoy_input, parsed_path, parsed_query
from mixerhub.adapters._opa_remote import PolicyRejected
from mixerhub.adapters.opa import OpaAdapter, OpaParams
from mixerhub.plugins import load_plugins
from mixerhub.templates.instance import Instance
from tests.adapters.opa_tokens import quick_start_policy, token
from tests.fakes import Log
from tests.services.opa import OpaServer

# Istio's OPA adapter style: the instance is the input (subject, action).
ISTIO_POLICY = textwrap.dedent("""\
    package mixerauthz

    default allow := false

    allow if {
        input.subject.user == "alice"
        input.action.method == "GET"
    }

    allow if {
        "admins" in split(input.subject.groups, ",")
    }
    """)


def make(errors: list[int] | None = None, **params: Any) -> OpaAdapter:
    counted = errors if errors is not None else []
    env = AdapterEnv(handler="opa.handler.istio-system", registry=CollectorRegistry(),
                     logger=Log(), on_error=lambda: counted.append(1))
    return OpaAdapter(OpaParams.model_validate(params), env)


def authz(user: str | None = None, groups: str | None = None, method: str | None = None,
          path: str | None = None, subject_props: dict[str, Any] | None = None,
          action_props: dict[str, Any] | None = None) -> Instance:
    subject = Instance("authz.instance.istio-system.subject", "authorization",
                       {"user": user, "groups": groups, "properties": subject_props})
    action = Instance("authz.instance.istio-system.action", "authorization",
                      {"namespace": None, "service": None, "method": method, "path": path,
                       "properties": action_props})
    return Instance("authz.instance.istio-system", "authorization",
                    {"subject": subject, "action": action})


def request(method: str, path: str, auth: str | None = None, body: str | None = None
            ) -> Instance:
    """An instance as the envoy-shaped config in docs/adapters/opa.md builds it."""
    props: dict[str, Any] = {"headers.authorization": auth, "host": "example.com",
                             "destination.ip": ipaddress.ip_address("10.0.0.2"),
                             "destination.port": 8080}
    if body is not None:
        props |= {"body": body, "headers.content-type": "application/json"}
    return authz(user="spiffe://cluster.local/ns/default/sa/web", method=method, path=path,
                 subject_props={"source.ip": ipaddress.ip_address("10.0.0.1"),
                                "source.port": 52000},
                 action_props={k: v for k, v in props.items() if v is not None})


# ---- params -----------------------------------------------------------------------------

def test_istio_params_load_and_fail_close_becomes_the_adapter_switch() -> None:
    adapter = make(policy=[ISTIO_POLICY], checkMethod="data.mixerauthz.allow", failClose=True)
    assert adapter.fail_closed is True
    assert make(policy=[ISTIO_POLICY], checkMethod="data.mixerauthz.allow").fail_closed is False


@pytest.mark.parametrize(("params", "error"), [
    ({}, "give policy"),
    ({"policy": [ISTIO_POLICY]}, "checkMethod: required"),
    ({"policy": [ISTIO_POLICY], "checkMethod": "mixerauthz.allow"}, "not a reference"),
    ({"policy": ["package a\nallow if {"], "checkMethod": "data.a.allow"},
     r"policy does not compile: policy\[0\] line 2"),
    ({"policy": ['package a\nallow if net.cidr_contains("10.0.0.0/8", input.ip)'],
      "checkMethod": "data.a.allow"},
     r"built-ins not available in the embedded Rego engine \(regopy [\d.]+\): "
     r"net.cidr_contains \(policy\[0\] line 2\); evaluate this policy on an OPA server"),
    ({"url": "127.0.0.1:8181", "policyPath": "a/allow"}, "not an http:// or https:// URL"),
    ({"url": "http://127.0.0.1:8181"}, "give policyPath"),
    ({"url": "http://127.0.0.1:8181", "policyPath": "a//allow"}, "not a path"),
    ({"policy": [ISTIO_POLICY], "checkMethod": "data.mixerauthz.allow", "inputShape": "http"},
     "authorization"),
])
def test_bad_params_are_config_errors(params: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        OpaParams.model_validate(params)


def test_a_remote_policy_may_use_builtins_the_embedded_engine_lacks() -> None:
    OpaParams.model_validate({"url": "http://127.0.0.1:1", "policyPath": "a/allow",
                              "policy": ['package a\nallow if net.cidr_contains("10.0.0.0/8", '
                                         "input.ip)"]})


def test_registered_through_the_entry_point() -> None:
    assert load_plugins().adapters.get("opa") is OpaAdapter


# ---- embedded, Istio's shape --------------------------------------------------------------

async def test_embedded_istio_policy_allows_and_denies_with_lifetimes() -> None:
    adapter = make(policy=[ISTIO_POLICY], checkMethod="data.mixerauthz.allow",
                   cachingInterval="30s", cachingUseCount=50)
    await adapter.start()
    allowed = await adapter.check(authz(user="alice", method="GET"))
    by_group = await adapter.check(authz(user="bob", groups="dev,admins", method="DELETE"))
    denied = await adapter.check(authz(user="bob", method="GET"))
    await adapter.stop()
    assert (allowed.code, allowed.valid_duration, allowed.valid_use_count) == \
        (0, dt.timedelta(seconds=30), 50)
    assert by_group.code == 0
    assert (denied.code, denied.message) == (7, "opa: denied by data.mixerauthz.allow")


async def test_an_undefined_decision_denies() -> None:
    adapter = make(policy=["package a\nallow if input.subject.user == \"alice\""],
                   checkMethod="data.a.allow")
    await adapter.start()
    result = await adapter.check(authz(user="bob"))
    assert (result.code, result.message) == (7, "opa: undefined by data.a.allow")


async def test_object_decisions_in_opa_envoy_form() -> None:
    policy = 'package a\nresult := {"allowed": input.subject.user == "alice", "http_status": 403}'
    adapter = make(policy=[policy], checkMethod="data.a.result")
    await adapter.start()
    assert (await adapter.check(authz(user="alice"))).code == 0
    assert (await adapter.check(authz(user="bob"))).code == 7


async def test_a_decision_of_another_type_is_an_error_not_a_verdict() -> None:
    adapter = make(policy=['package a\nallow := "yes"'], checkMethod="data.a.allow")
    await adapter.start()
    with pytest.raises(BackendError, match="neither a boolean nor an object"):
        await adapter.check(authz(user="alice"))


async def test_an_evaluation_error_is_a_backend_error_for_the_fail_policy() -> None:
    adapter = make(policy=["package a\nallow := true if input.subject.user\n"
                           "allow := false if input.subject.user"],
                   checkMethod="data.a.allow", failClose=True)
    await adapter.start()
    with pytest.raises(BackendError, match="eval_conflict_error"):
        await adapter.check(authz(user="alice"))
    assert adapter.status is Status.ERROR


async def test_not_started_is_a_backend_error() -> None:
    adapter = make(policy=[ISTIO_POLICY], checkMethod="data.mixerauthz.allow")
    with pytest.raises(BackendError, match="not started"):
        await adapter.check(authz(user="alice"))


# ---- OPA-Envoy's input shape ----------------------------------------------------------------

def test_envoy_input_shape() -> None:
    document = envoy_input(request("GET", "/people/a%20b?lang=en&lang=fr&x", auth="Bearer t"))
    http = document["attributes"]["request"]["http"]
    assert http == {"method": "GET", "path": "/people/a%20b?lang=en&lang=fr&x",
                    "host": "example.com", "headers": {"authorization": "Bearer t"}}
    assert document["parsed_path"] == ["people", "a b"]
    assert document["parsed_query"] == {"lang": ["en", "fr"], "x": [""]}
    assert document["attributes"]["source"] == {
        "address": {"socketAddress": {"address": "10.0.0.1", "portValue": 52000}},
        "principal": "spiffe://cluster.local/ns/default/sa/web"}
    assert document["attributes"]["destination"] == {
        "address": {"socketAddress": {"address": "10.0.0.2", "portValue": 8080}}}
    assert document["parsed_body"] is None
    assert document["version"] == {"encoding": "protojson", "ext_authz": "v3"}


def test_envoy_input_headers_from_a_map_and_json_body() -> None:
    instance = authz(method="POST", path="/", action_props={
        "headers": {"Content-Type": "application/json", "X-A": "1"}, "headers.x-b": "2",
        "body": '{"firstname": "Bob"}', "tenant": "blue"})
    document = envoy_input(instance)
    assert document["attributes"]["request"]["http"]["headers"] == {
        "content-type": "application/json", "x-a": "1", "x-b": "2"}
    assert document["parsed_body"] == {"firstname": "Bob"}
    assert document["attributes"]["contextExtensions"] == {"tenant": "blue"}


@pytest.mark.parametrize(("path", "parts", "query"), [
    ("/", [""], {}), ("/a/b/", ["a", "b", ""], {}), ("/a?b=1", ["a"], {"b": ["1"]}),
    ("", [""], {}),
])
def test_parsed_path_and_query(path: str, parts: list[str], query: dict[str, Any]) -> None:
    assert (parsed_path(path), parsed_query(path)) == (parts, query)


# ---- the quick-start policy, embedded and remote ------------------------------------------

def quick_start_cases() -> list[tuple[str, Instance, int]]:
    admin, guest = token("admin", sub="alice"), token("guest")
    return [
        ("guest reads people", request("GET", "/people", f"Bearer {guest}"), 0),
        ("guest reads a person", request("GET", "/people/7?x=1", f"Bearer {guest}"), 0),
        ("guest may not write", request("POST", "/people", f"Bearer {guest}",
                                        '{"firstname": "Bob"}'), 7),
        ("admin writes someone else", request("POST", "/people", f"Bearer {admin}",
                                              '{"firstname": "Bob"}'), 0),
        ("admin may not write themself", request("POST", "/people", f"Bearer {admin}",
                                                 '{"firstname": "ALICE"}'), 7),
        ("other paths", request("GET", "/other", f"Bearer {guest}"), 7),
        ("no token", request("GET", "/people"), 7),
        ("expired token", request("GET", "/people", f"Bearer {token('guest', valid_for=-5)}"),
         7),
        ("wrong signature", request("GET", "/people",
                                    f"Bearer {token('guest', secret=b'other')}"), 7),
        ("token not yet valid", request("GET", "/people",
                                        f"Bearer {token('guest', nbf=2_000_000_000)}"), 7),
    ]


EMBEDDED = {"policy": None, "checkMethod": "data.envoy.authz.allow", "inputShape": "envoy"}


async def test_quick_start_decides_alike_embedded_and_on_a_real_opa(opa_url: str) -> None:
    embedded = make(**{**EMBEDDED, "policy": [quick_start_policy()]})
    remote = make(url=opa_url, policyPath="envoy/authz/allow", inputShape="envoy",
                  policy=[quick_start_policy()])  # uploaded at start
    await embedded.start()
    await remote.start()
    try:
        decided = [(name, (await embedded.check(i)).code, (await remote.check(i)).code, want)
                   for name, i, want in quick_start_cases()]
    finally:
        await embedded.stop()
        await remote.stop()
    assert [(n, e, r) for n, e, r, _ in decided] == [(n, w, w) for n, _, _, w in decided]


async def test_a_malformed_token_is_undefined_in_opa_but_an_engine_error_embedded(
        opa_url: str) -> None:
    """The one divergence met: regopy's io.jwt.decode_verify fails inside the engine on a
    token that is not three base64 parts; OPA makes the call undefined (deny)."""
    instance = request("GET", "/people", "Bearer x.y.z")
    embedded = make(**{**EMBEDDED, "policy": [quick_start_policy()]})
    remote = make(url=opa_url, policyPath="envoy/authz/allow", inputShape="envoy",
                  policy=[quick_start_policy()])
    await embedded.start()
    await remote.start()
    assert (await remote.check(instance)).code == 7
    with pytest.raises(BackendError, match="basic_string_view"):
        await embedded.check(instance)
    await embedded.stop()
    await remote.stop()


# ---- remote ---------------------------------------------------------------------------------

async def test_remote_with_a_policy_already_in_opa(opa_server: OpaServer, opa_url: str) -> None:
    opa_server.request("PUT", "/v1/policies/istio", ISTIO_POLICY.encode())
    adapter = make(url=opa_url, checkMethod="data.mixerauthz.allow")  # path from checkMethod
    await adapter.start()
    assert (await adapter.check(authz(user="alice", method="GET"))).code == 0
    denied = await adapter.check(authz(user="bob", method="GET"))
    assert (denied.code, denied.message) == (7, "opa: denied by data.mixerauthz.allow")
    undefined = await adapter.check(authz(user="bob"))  # no policy at that path → undefined
    await adapter.stop()
    assert undefined.code == 7
    other = make(url=opa_url, policyPath="no/such/rule")
    await other.start()
    assert (await other.check(authz(user="alice"))).message == "opa: undefined by no/such/rule"
    await other.stop()


async def test_a_policy_opa_refuses_fails_the_start_with_opas_reason(opa_url: str) -> None:
    adapter = make(url=opa_url, policyPath="a/allow", policy=["package a\nallow if {"])
    with pytest.raises(PolicyRejected, match="refused policy mixerhub/opa.handler.istio-system/0"):
        await adapter.start()
    await adapter.stop()


async def test_an_evaluation_error_on_opa_is_a_backend_error(opa_url: str) -> None:
    adapter = make(url=opa_url, policyPath="a/allow", policy=[
        "package a\nallow := true if input.subject.user\nallow := false if input.subject.user"])
    await adapter.start()
    with pytest.raises(BackendError, match="HTTP 500 internal_error.*conflict"):
        await adapter.check(authz(user="alice"))
    await adapter.stop()


async def test_opa_down_at_start_uploads_once_it_is_back(own_opa: OpaServer) -> None:
    own_opa.stop()
    errors: list[int] = []
    adapter = make(errors, url=own_opa.url, checkMethod="data.mixerauthz.allow",
                   policy=[ISTIO_POLICY], failClose=True)
    await adapter.start()  # no exception: checks follow the fail policy until OPA is back
    assert adapter.status is Status.ERROR and errors == [1]
    with pytest.raises(BackendError, match=f"opa {own_opa.url}"):
        await adapter.check(authz(user="alice", method="GET"))
    own_opa.start()
    assert (await adapter.check(authz(user="alice", method="GET"))).code == 0
    assert adapter.status is Status.OK
    own_opa.stop()
    with pytest.raises(BackendError, match="ClientConnectorError"):
        await adapter.check(authz(user="alice", method="GET"))
    assert adapter.status is Status.ERROR
    await adapter.stop()


async def test_an_opa_that_stops_answering_times_out_as_a_backend_error(
        own_opa: OpaServer) -> None:
    """The real server frozen (SIGSTOP): the check fails after `timeout`, not later."""
    import os
    import signal
    import time

    own_opa.request("PUT", "/v1/policies/istio", ISTIO_POLICY.encode())
    adapter = make(url=own_opa.url, checkMethod="data.mixerauthz.allow", timeout="500ms")
    await adapter.start()
    assert (await adapter.check(authz(user="alice", method="GET"))).code == 0
    assert own_opa.proc is not None
    os.kill(own_opa.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(BackendError, match="TimeoutError"):
            await adapter.check(authz(user="alice", method="GET"))
        assert time.monotonic() - started < 2.0
    finally:
        os.kill(own_opa.proc.pid, signal.SIGCONT)
    assert (await adapter.check(authz(user="alice", method="GET"))).code == 0
    await adapter.stop()
