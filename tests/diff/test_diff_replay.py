"""What a replay means: precondition verdicts only (no quota charged, shadow rules left
out), handlers with external state never contacted (their checks counted apart), and the
memo gives exactly what evaluating every line gives."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from diffkit import (BASE, CALLER_VERSION, CANDIDATE, HEAD, RESOURCE_EXHAUSTED, bag,
                     base_code, combination, denier, line, rule, versions_list, write_config)

from mixerhub.config.loader import load_config
from mixerhub.diff.command import DiffOptions, diff
from mixerhub.diff.replay import backend_of
from mixerhub.plugins import load_plugins


def traffic(folder: Path, count: int, name: str = "checks.jsonl") -> str:
    path = folder / name
    path.write_bytes(b"".join(line(i, bag(i), base_code(*combination(i)))
                              for i in range(count)))
    return str(path)


def run(base: str, candidate: str, source: str, **options: object) -> dict:
    report = diff(DiffOptions((base,), (candidate,), (source,), jobs=1, **options))  # type: ignore[arg-type]
    return report.to_json()


def test_a_handler_with_external_state_is_not_contacted_and_its_checks_not_compared(
        tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/versions"
    base = write_config(tmp_path, "base.yaml", *BASE)
    # The candidate asks a list provider about reviews' callers too.
    candidate = write_config(tmp_path, "candidate.yaml", *BASE,
                             versions_list("remote-versions", ["v1"], provider=url),
                             rule("reviews-callers", 'destination.service.name == "reviews"',
                                  "remote-versions", "caller-version"))
    report = run(base, candidate, traffic(tmp_path, 400))
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody called
    listener.close()
    # Half the checks go to reviews, and those that /admin does not deny first reach it.
    assert report["checks"]["not_replayed"] == 160
    assert report["checks"]["replayed"] == 240
    assert report["checks"]["changed"] == 0
    assert report["not_replayed"] == [{
        "config": "candidate", "handler": "remote-versions.handler.istio-system",
        "reason": f"list provider {url}", "checks": 160}]


def test_backends_of_the_built_in_adapters(tmp_path: Path) -> None:
    config = write_config(tmp_path, "c.yaml", (
        f"{HEAD}kind: handler\nmetadata: {{name: remote-opa, namespace: istio-system}}\n"
        "spec: {compiledAdapter: opa, params: {url: 'http://opa:8181', "
        "policyPath: authz/allow}}\n"), versions_list("local", ["v1"]),
        denier("deny", 7, "no"))
    handlers = load_config([config], load_plugins()).handlers
    assert {n.split(".")[0]: backend_of(h) for n, h in handlers.items()} == {
        "remote-opa": "OPA server http://opa:8181", "local": None, "deny": None}


QUOTA = [f"{HEAD}kind: handler\nmetadata: {{name: one-request, namespace: istio-system}}\n"
         "spec: {compiledAdapter: memquota, params: {quotas: [{name: "
         "requestcount.instance.istio-system, maxAmount: 1, validDuration: 60s}]}}\n",
         f"{HEAD}kind: instance\nmetadata: {{name: requestcount, namespace: istio-system}}\n"
         "spec: {compiledTemplate: quota, params: {dimensions: {source: "
         "'source.labels[\"app\"] | \"x\"'}}}\n",
         f"{HEAD}kind: rule\nmetadata: {{name: quota, namespace: istio-system}}\n"
         "spec: {actions: [{handler: one-request, instances: [requestcount]}]}\n"]


def test_quotas_are_not_charged_and_recorded_quota_denials_show_as_such(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, "quota.yaml", *BASE, *QUOTA)
    path = tmp_path / "checks.jsonl"
    # Recorded while the quota ran out: every allowed check after the first got a 429.
    path.write_bytes(b"".join(
        line(i, bag(i), code if (code := base_code(*combination(i))) else
             (0 if i == 1 else RESOURCE_EXHAUSTED)) for i in range(200)))
    report = run(config, config, str(path))
    assert report["checks"]["changed"] == 0
    # 200 checks: 40 to /admin, 48 ratings callers not on the list, 112 allowed, 111 of
    # them recorded as exhausted: a replay of the preconditions allows them all.
    assert report["recorded"] == {"agree": 89, "differ": [
        {"recorded": "RESOURCE_EXHAUSTED", "base": "OK", "checks": 111}]}


def test_shadow_rules_change_no_verdict(tmp_path: Path) -> None:
    base = write_config(tmp_path, "base.yaml", *BASE)
    candidate = write_config(tmp_path, "candidate.yaml", *BASE, rule(
        "deny-everything", "true", "deny-admin", "nothing", extra="  shadow: true\n"))
    report = run(base, candidate, traffic(tmp_path, 200))
    assert (report["checks"]["read"], report["checks"]["changed"]) == (200, 0)


def test_header_operations_are_compared(tmp_path: Path) -> None:
    base = write_config(tmp_path, "base.yaml", *BASE)
    tag = (f"{HEAD}kind: rule\nmetadata: {{name: tag-api, namespace: istio-system}}\n"
           "spec:\n  match: request.path.startsWith(\"/api\")\n"
           "  responseHeaderOperations:\n  - name: x-policy\n    values: ['\"v2\"']\n")
    candidate = write_config(tmp_path, "candidate.yaml", *BASE, tag)
    report = run(base, candidate, traffic(tmp_path, 200))
    # /api/c and /api/d (80 checks) that nothing denies: all reviews (40), ratings v1–v2 (16).
    assert report["transitions"] == [{
        "from": "OK", "to": "OK", "from_code": 0, "to_code": 0, "changed": ["headers"],
        "label": "OK → OK (headers)", "checks": 56}]
    assert report["rules"] == []  # no denial decides them


def test_the_memo_answers_what_evaluating_every_line_answers(tmp_path: Path) -> None:
    base = write_config(tmp_path, "base.yaml", *BASE)
    candidate = write_config(tmp_path, "candidate.yaml", *CANDIDATE)
    path = tmp_path / "checks.jsonl"
    with open(path, "wb") as out:
        for i in range(3000):
            values = bag(i)
            if i % 7 == 0:
                del values["source.labels"]  # absent map: -source.labels
            if i % 11 == 0:
                values["source.labels"] = {"app": "web"}  # map without the key
            if i % 13 == 0:
                del values["request.path"]  # absent: the match fails, the rule does not apply
            out.write(line(i, values))
    remembered = run(base, candidate, str(path), top=1000, examples=1000)
    evaluated = run(base, candidate, str(path), top=1000, examples=1000, memo=False)
    assert remembered["replay"]["evaluations"] < evaluated["replay"]["evaluations"] == 6000
    assert {**remembered, "replay": None} == {**evaluated, "replay": None}
    assert remembered["checks"]["changed"] > 0


def test_a_rule_that_checks_and_charges_is_replayed_without_charging(
        tmp_path: Path) -> None:
    mixed = (f"{HEAD}kind: rule\nmetadata: {{name: ratings-mixed, namespace: istio-system}}\n"
             "spec:\n  match: destination.service.name == \"ratings\"\n  actions:\n"
             "  - {handler: one-request, instances: [requestcount]}\n"
             "  - {handler: known-versions, instances: [caller-version]}\n")
    config = write_config(tmp_path, "c.yaml", *BASE[:4], CALLER_VERSION, *QUOTA[:2], mixed)
    report = run(config, config, traffic(tmp_path, 200))
    # The memquota handler (1 request a minute) is a stand-in that is never called: the
    # recorded verdicts (from BASE, whose ratings rule is the same check) all agree.
    assert (report["checks"]["replayed"], report["checks"]["changed"]) == (200, 0)
    assert report["recorded"] == {"agree": 200, "differ": []}


def test_a_plugin_adapter_says_when_its_checks_need_a_backend() -> None:
    from mixerhub.adapter import BaseAdapter
    from mixerhub.config.loader import HandlerConfig

    class Remote(BaseAdapter):
        name = "remote"

        @staticmethod
        def replay_backend(params: object) -> str | None:
            return "the fraud service" if getattr(params, "url", "") else None

    class Local(BaseAdapter):
        name = "local"

    def handler(cls: type, params: object) -> HandlerConfig:
        return HandlerConfig("h.handler.ns", "h", "ns", "handler", cls, params, "x:1")  # type: ignore[arg-type]

    class WithUrl:
        url = "http://fraud"

    assert backend_of(handler(Remote, WithUrl())) == "the fraud service"
    assert backend_of(handler(Remote, object())) is None
    assert backend_of(handler(Local, object())) is None
