"""mixerhub.testkit: policies from YAML text on the real engine, adapter calls recorded."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

import mixerhub.adapters.denier
from mixerhub import hookimpl
from mixerhub.adapter import BackendError, BaseAdapter, CheckResult
from mixerhub.adapter import Status
from mixerhub.config.errors import ConfigErrors
from mixerhub.errors import AttributeJSONError
from mixerhub.plugins import AdapterRegistry
from mixerhub.testkit import ManualClock, SyncHarness, harness, plugins_with

HEADER = "apiVersion: config.istio.io/v1alpha2\n"

DENY_MALLORY = HEADER + """kind: handler
metadata: {name: deny, namespace: istio-system}
spec:
  compiledAdapter: denier
  params: {status: {code: 7, message: no mallory}, validDuration: 30s}
---
""" + HEADER + """kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
""" + HEADER + """kind: rule
metadata: {name: no-mallory, namespace: istio-system}
spec:
  match: request.headers["x-user"] == "mallory"
  actions: [{handler: deny, instances: [nothing]}]
"""

QUOTA = HEADER + """kind: handler
metadata: {name: q, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params:
    quotas: [{name: rq.instance.istio-system, maxAmount: 2, validDuration: 10s}]
---
""" + HEADER + """kind: instance
metadata: {name: rq, namespace: istio-system}
spec:
  compiledTemplate: quota
  params: {dimensions: {user: 'request.headers["x-user"] | "nobody"'}}
---
""" + HEADER + """kind: rule
metadata: {name: limit, namespace: istio-system}
spec:
  actions: [{handler: q, instances: [rq]}]
"""


class Collect(BaseAdapter):
    """A report adapter that keeps nothing itself: the kit records what it is handed."""

    name: ClassVar[str] = "collect"
    templates: ClassVar[frozenset[str]] = frozenset({"logentry"})

    async def report(self, instances: Any) -> None:
        return None


class Broken(BaseAdapter):
    name: ClassVar[str] = "broken"
    templates: ClassVar[frozenset[str]] = frozenset({"checknothing"})

    async def check(self, instance: Any) -> CheckResult:
        raise BackendError("backend down")


@hookimpl
def mixerhub_register_adapters(registry: AdapterRegistry) -> None:
    registry.register(Collect)
    registry.register(Broken)


PLUGIN = types.SimpleNamespace(mixerhub_register_adapters=mixerhub_register_adapters)

REPORTS = HEADER + """kind: handler
metadata: {name: sink, namespace: istio-system}
spec: {compiledAdapter: collect}
---
""" + HEADER + """kind: instance
metadata: {name: line, namespace: istio-system}
spec:
  compiledTemplate: logentry
  params: {variables: {path: request.path, code: response.code | 0}}
---
""" + HEADER + """kind: rule
metadata: {name: log-api, namespace: istio-system}
spec:
  match: request.path.startsWith("/api")
  actions: [{handler: sink, instances: [line]}]
"""

BROKEN = HEADER + """kind: broken
metadata: {name: b, namespace: istio-system}
spec: {}
---
""" + HEADER + """kind: checknothing
metadata: {name: n, namespace: istio-system}
spec: {}
---
""" + HEADER + """kind: rule
metadata: {name: fragile, namespace: istio-system}
spec:
  failPolicy: {policy}
  actions: [{handler: b.broken, instances: [n.checknothing]}]
"""


async def test_check_returns_the_verdict_and_the_calls_it_made() -> None:
    async with harness(DENY_MALLORY) as hub:
        mallory = await hub.check({"request.headers": {"x-user": "mallory", "x-id": "1"}})
        alice = await hub.check({"request.headers": {"x-user": "alice"}})
    assert (mallory.verdict.code, mallory.verdict.message) == (7, "no mallory")
    assert [r.notation() for r in mallory.verdict.references] == ["request.headers[x-user]"]
    assert [(c.handler, c.method) for c in mallory.calls] == \
        [("deny.handler.istio-system", "check")]
    assert mallory.calls[0].result.valid_duration.total_seconds() == 30
    assert mallory.instances("deny") == mallory.instances("deny.handler.istio-system")
    assert [i.template for i in mallory.instances()] == ["checknothing"]
    assert mallory.instances("other") == []
    assert alice.verdict.ok and alice.calls == ()  # the rule did not match: no adapter call


async def test_reports_are_batched_per_handler_and_filtered_by_match() -> None:
    async with harness(REPORTS, plugins=[PLUGIN]) as hub:
        run = await hub.report([{"request.path": "/api/a", "response.code": 200},
                                {"request.path": "/static/x"},
                                {"request.path": "/api/b"}])
    assert [(c.handler, c.method, len(c.instances)) for c in run.calls] == \
        [("sink.handler.istio-system", "report", 2)]
    assert [i.variables for i in run.instances("sink")] == \
        [{"path": "/api/a", "code": 200}, {"path": "/api/b", "code": 0}]


async def test_quotas_use_the_injected_clock() -> None:
    clock = ManualClock()
    async with harness(QUOTA, clock=clock) as hub:
        ask = {"request.headers": {"x-user": "alice"}}
        grants = [(await hub.check(ask, {"rq": 1})).quotas["rq"].granted_amount
                  for _ in range(3)]
        clock.advance(11)
        later = await hub.check(ask, {"rq": 1})
        other = await hub.check({}, {"rq": 1})
    assert grants == [1, 1, 0]
    assert later.quotas["rq"].granted_amount == 1
    assert other.instances("q")[0].dimensions == {"user": "nobody"}


@pytest.mark.parametrize(("policy", "code"), [("open", 0), ("closed", 14)])
async def test_a_failing_adapter_is_recorded_counted_and_follows_the_fail_policy(
        policy: str, code: int) -> None:
    async with harness(BROKEN.replace("{policy}", policy), plugins=[PLUGIN]) as hub:
        run = await hub.check({})
        failures = hub.metric("mixerhub_rule_failures_total", rule="fragile.istio-system",
                              policy=policy)
    assert run.verdict.code == code
    assert isinstance(run.calls[0].result, BackendError)
    assert str(run.calls[0].result) == "backend down"
    assert failures == 1.0


async def test_the_decision_cache_is_off_unless_asked_for() -> None:
    mallory = {"request.headers": {"x-user": "mallory"}}
    async with harness(DENY_MALLORY) as hub:
        calls = [len((await hub.check(mallory)).calls) for _ in range(2)]
    async with harness(DENY_MALLORY, cache_size=100) as hub:
        cached = [len((await hub.check(mallory)).calls) for _ in range(2)]
        hits = hub.metric("mixerhub_decision_cache_hits_total")
    assert calls == [1, 1]
    assert cached == [1, 0] and hits == 1.0


async def test_config_errors_name_policy_yaml_not_a_temporary_path() -> None:
    with pytest.raises(ConfigErrors) as err:
        async with harness(DENY_MALLORY.replace("validDuration", "validDuraton")):
            pass
    assert err.value.errors == [
        "policy.yaml:6: handler/deny: spec.params: unknown key 'validDuraton'",
        "policy.yaml:18: rule/no-mallory: spec.actions[0].handler: "
        "no handler 'deny' in namespace 'istio-system'"]


async def test_paths_load_as_the_hub_loads_them(tmp_path: Path) -> None:
    (tmp_path / "deny.yaml").write_text(DENY_MALLORY)
    async with harness(tmp_path) as hub:
        run = await hub.check({"request.headers": {"x-user": "mallory"}})
    assert run.verdict.code == 7


async def test_attributes_are_the_json_form_typed_by_the_manifest() -> None:
    async with harness(DENY_MALLORY) as hub:
        with pytest.raises(AttributeJSONError, match="'request.size': expected INT64"):
            await hub.check({"request.size": "12"})


def test_an_installed_plugin_passed_again_is_registered_once() -> None:
    plugins = plugins_with([mixerhub.adapters.denier])
    assert plugins.adapters.get("denier") is mixerhub.adapters.denier.DenierAdapter


def test_sync_harness_runs_without_an_event_loop_and_stops_the_adapters() -> None:
    with SyncHarness(DENY_MALLORY) as hub:
        assert hub.check({"request.headers": {"x-user": "mallory"}}).verdict.code == 7
        adapter = hub.adapter("deny")
        assert adapter.status is Status.OK
    assert adapter.status is Status.NOT_READY
    with pytest.raises(KeyError, match="no handler 'nosuch'"):
        hub.adapter("nosuch")
