"""The denier adapter, and the duration parsing every built-in adapter's params share."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from mixerhub.adapter import AdapterEnv, CheckResult, QuotaArgs
from mixerhub.adapters import denier
from mixerhub.adapters._params import format_duration, parse_duration
from mixerhub.adapters.denier import DenierAdapter, DenierParams
from mixerhub.plugins import load_plugins
from mixerhub.templates.instance import Instance


def make(params: dict[str, Any]) -> DenierAdapter:
    env = AdapterEnv(handler="denyall.istio-system", registry=CollectorRegistry(), logger=None)
    return DenierAdapter(DenierParams.model_validate(params), env)


NOTHING = Instance("denyrequest.instance.istio-system", "checknothing", {})


async def test_default_denies_with_permission_denied_for_5s_and_1000_uses() -> None:
    adapter = make({})
    await adapter.start()
    assert await adapter.check(NOTHING) == CheckResult(
        code=7, message="", valid_duration=dt.timedelta(seconds=5), valid_use_count=1000)


async def test_configured_status_and_lifetime_are_returned() -> None:
    adapter = make({"status": {"code": 16, "message": "log in first"},
                    "validDuration": "90s", "validUseCount": 3})
    result = await adapter.check(Instance("who.instance.ns", "listentry", {"value": "bob"}))
    assert (result.code, result.message) == (16, "log in first")
    assert (result.valid_duration, result.valid_use_count) == (dt.timedelta(seconds=90), 3)


async def test_code_zero_allows() -> None:
    adapter = make({"status": {"code": 0}})
    assert (await adapter.check(NOTHING)).code == 0


async def test_quota_instances_are_granted_nothing() -> None:
    adapter = make({})
    result = await adapter.quota(Instance("q.instance.ns", "quota", {"dimensions": {}}),
                                 QuotaArgs(amount=5))
    assert result.granted == 0


def test_accepts_check_templates_like_mixer() -> None:
    assert {"checknothing", "listentry", "authorization"} <= DenierAdapter.templates
    assert "metric" not in DenierAdapter.templates


def test_istio_handler_yaml_loads_unchanged() -> None:
    doc = yaml.safe_load("""
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: denyall, namespace: istio-system}
spec:
  compiledAdapter: denier
  params:
    status:
      code: 7
      message: Not allowed
    validDuration: 10s
    validUseCount: 50
""")
    params = DenierParams.model_validate(doc["spec"]["params"])
    assert params.status.message == "Not allowed"
    assert params.valid_duration == dt.timedelta(seconds=10)


@pytest.mark.parametrize(("params", "field"), [
    ({"status": {"code": 17}}, "status.code"),
    ({"status": {"code": 7, "details": []}}, "status.details"),
    ({"validDuration": "5 parsecs"}, "validDuration"),
    ({"validDuration": "-5s"}, "validDuration"),
    ({"validUseCount": -1}, "validUseCount"),
    ({"valid_duraton": "5s"}, "valid_duraton"),
])
def test_bad_params_name_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        DenierParams.model_validate(params)
    assert field in str(info.value)


def test_params_are_frozen() -> None:
    params = DenierParams()
    with pytest.raises(ValidationError):
        params.valid_use_count = 5  # type: ignore[misc]


def test_registers_through_the_hook() -> None:
    plugins = load_plugins(extra=[denier], entry_points=False)
    assert plugins.adapters.get("denier") is DenierAdapter


# ---- adapters/_params.py: durations ---------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("5s", 5), ("500ms", 0.5), ("1m", 60), ("300s", 300), ("1h30m", 5400), ("1.5s", 1.5),
    ("0.050s", 0.05), ("250us", 0.00025), ("0", 0), ("30", 30), (" 2m ", 120), (2, 2),
    (0.05, 0.05), (dt.timedelta(seconds=7), 7),
])
def test_durations_parse(text: Any, seconds: float) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "s", "5x", "5 s", "1m5", "ms5", "abc", "-1s", -1, True,
                                 float("nan"), float("inf"), [], None, "1e3s"])
def test_bad_durations_say_what_is_expected(bad: Any) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


@pytest.mark.parametrize("seconds", [0, 0.05, 1, 300, 5400.25])
def test_formatted_durations_parse_back(seconds: float) -> None:
    delta = dt.timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


def test_json_schema_shows_durations_as_configs_write_them() -> None:
    schema = DenierParams.model_json_schema(by_alias=True)
    duration = schema["properties"]["validDuration"]
    assert duration["default"] == "5s"
    assert {"type": "number", "minimum": 0} in duration["anyOf"]
    assert all("description" in p for p in schema["properties"].values())
