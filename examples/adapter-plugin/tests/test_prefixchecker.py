"""The prefixchecker adapter tested with mixerhub's test kit: real config, real engine.

Run from this folder with the package importable (``pip install -e .``, or
``PYTHONPATH=src``): ``pytest``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

import mixerhub_prefixchecker
from mixerhub.config.errors import ConfigErrors
from mixerhub.testkit import harness, load_test_config, plugins_with
from mixerhub_prefixchecker import PrefixParams

CONFIG = (Path(__file__).parents[1] / "config.yaml").read_text()


async def test_a_known_prefix_is_allowed_for_30s() -> None:
    async with harness(CONFIG, plugins=[mixerhub_prefixchecker]) as hub:
        run = await hub.check({"source.uid": "kubernetes://reviews-v1"})
    assert run.verdict.ok
    assert (run.verdict.valid_duration, run.verdict.valid_use_count) == \
        (dt.timedelta(seconds=30), 1000)
    assert [i.value for i in run.instances("trusted")] == ["kubernetes://reviews-v1"]


async def test_anything_else_is_denied_with_the_value_in_the_message() -> None:
    async with harness(CONFIG, plugins=[mixerhub_prefixchecker]) as hub:
        run = await hub.check({"source.uid": "kubernetes://ratings-v1"})
    assert (run.verdict.code, run.verdict.message) == \
        (7, "kubernetes://ratings-v1 has no allowed prefix")
    assert [r.notation() for r in run.verdict.references] == ["source.uid"]


async def test_a_caller_without_uid_checks_the_fallback_value() -> None:
    async with harness(CONFIG, plugins=[mixerhub_prefixchecker]) as hub:
        run = await hub.check({})
    assert run.instances("trusted")[0].value == "unknown"
    assert run.verdict.code == 7


def test_with_the_fixture_no_event_loop_needed(mixerhub_harness) -> None:
    hub = mixerhub_harness(CONFIG, plugins=[mixerhub_prefixchecker])
    verdicts = [hub.check({"source.uid": uid}).verdict.code
                for uid in ("kubernetes://productpage-v1", "kubernetes://details-v1")]
    assert verdicts == [0, 7]


def test_a_misspelt_param_is_a_config_error_naming_line_and_field() -> None:
    with pytest.raises(ConfigErrors) as err:
        load(CONFIG.replace("prefixes:", "prefix:"))
    assert err.value.errors[:2] == [
        "policy.yaml:10: handler/trusted: spec.params.prefixes: required",
        "policy.yaml:10: handler/trusted: spec.params: unknown key 'prefix'",
    ]


def test_it_refuses_templates_it_does_not_accept() -> None:
    with pytest.raises(ConfigErrors, match="handler 'trusted' .adapter prefixchecker. does "
                                           "not accept template 'metric'"):
        load(CONFIG + METRIC_RULE)


def test_params_need_at_least_one_prefix() -> None:
    with pytest.raises(ValidationError, match="at least 1 item"):
        PrefixParams.model_validate({"prefixes": []})


METRIC_RULE = """---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requests, namespace: istio-system}
spec:
  compiledTemplate: metric
  params: {value: "1"}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: count, namespace: istio-system}
spec:
  actions: [{handler: trusted, instances: [requests]}]
"""


def load(text: str) -> object:
    """Validate a config as ``mixerhub validate`` would, with this plugin registered."""
    return load_test_config(text, plugins_with([mixerhub_prefixchecker]))
