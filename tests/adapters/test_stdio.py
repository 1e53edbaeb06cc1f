"""The stdio adapter: line shapes, levels, redaction, files, rotation, params, failures."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from structlog.testing import capture_logs

from mixerhub.adapter import AdapterEnv, Status
from mixerhub.adapters.stdio import StdioAdapter, StdioParams, mixerhub_register_adapters
from mixerhub.plugins import AdapterRegistry
from mixerhub.redact import REDACTED
from mixerhub.templates.instance import Instance

DATA = Path(__file__).parent.parent / "data"
UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.at = T0

    def monotonic(self) -> float:
        return self.at.timestamp()

    def now(self) -> dt.datetime:
        return self.at


class Errors:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def make(params: dict[str, Any], clock: FakeClock | None = None,
         errors: Errors | None = None) -> StdioAdapter:
    env = AdapterEnv(handler="h.istio-system", registry=CollectorRegistry(),
                     logger=structlog.get_logger(), clock=clock or FakeClock(),
                     on_error=errors or Errors())
    return StdioAdapter(StdioParams.model_validate(params), env)


def logentry(variables: dict[str, Any], severity: str = "Info",
             timestamp: dt.datetime | None = T0) -> Instance:
    fields: dict[str, Any] = {"variables": variables, "severity": severity}
    if timestamp is not None:
        fields["timestamp"] = timestamp
    return Instance("accesslog.logentry.istio-system", "logentry", fields)


def metric(value: Any, dimensions: dict[str, Any]) -> Instance:
    return Instance("requestcount.metric.istio-system", "metric",
                    {"value": value, "dimensions": dimensions})


async def run(adapter: StdioAdapter, *instances: Instance) -> None:
    await adapter.start()
    await adapter.report(list(instances))
    await adapter.stop()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


# ---- line shapes -------------------------------------------------------------------------

async def test_a_logentry_is_one_json_line_in_mixers_shape(capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    await run(make({}), logentry({
        "url": "/reviews/1", "responseCode": 200, "latency": dt.timedelta(milliseconds=250),
        "sourceIp": ipaddress.ip_address("10.0.0.7"), "connectionMtls": False,
        "responseTimestamp": T0 + dt.timedelta(seconds=1)}))
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    record = json.loads(out)
    assert list(record)[:3] == ["level", "time", "instance"]
    assert record == {
        "level": "info", "time": "2026-11-30T12:00:00Z",
        "instance": "accesslog.logentry.istio-system",
        "connectionMtls": False, "latency": "0.250s", "responseCode": 200,
        "responseTimestamp": "2026-11-30T12:00:01Z", "sourceIp": "10.0.0.7",
        "url": "/reviews/1"}
    assert list(record)[3:] == sorted(list(record)[3:])  # stable order, as Mixer's


async def test_a_metric_line_has_value_and_dimensions_at_the_top_and_the_clock_time(
        capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    clock.at = T0 + dt.timedelta(minutes=5, microseconds=7)
    await run(make({}, clock), metric(dt.timedelta(seconds=2),
                                      {"response_code": 503, "reporter": "server"}))
    assert json.loads(capsys.readouterr().out) == {
        "level": "info", "time": "2026-11-30T12:05:00.000007Z",
        "instance": "requestcount.metric.istio-system",
        "value": "2s", "reporter": "server", "response_code": 503}


async def test_a_logentry_without_timestamp_takes_the_clock(
        capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    clock.at = T0 + dt.timedelta(hours=1)
    await run(make({}, clock), logentry({"a": 1}, timestamp=None))
    assert json.loads(capsys.readouterr().out)["time"] == "2026-11-30T13:00:00Z"


async def test_a_field_named_like_the_envelope_is_kept_under_a_prefix(
        capsys: pytest.CaptureFixture[str]) -> None:
    await run(make({}), logentry({"level": "debug", "instance": "x"}),
              metric(1, {"time": "later", "value": "dim"}))
    entry, point = json_lines(capsys.readouterr().out)
    assert entry["level"] == "info" and entry["variables.level"] == "debug"
    assert entry["instance"] == "accesslog.logentry.istio-system"
    assert entry["variables.instance"] == "x"
    assert point["dimensions.time"] == "later" and point["time"] == "2026-11-30T12:00:00Z"
    assert point["value"] == 1 and point["dimensions.value"] == "dim"


async def test_non_json_output_is_a_readable_key_value_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    await run(make({"outputAsJson": False}), logentry({
        "method": "GET", "path": "/a b", "empty": "", "code": 200, "mtls": True,
        "headers": {"x-id": "1"}}))
    line = capsys.readouterr().out.rstrip("\n")
    assert line == (
        'level=info time=2026-11-30T12:00:00Z instance=accesslog.logentry.istio-system '
        'code=200 empty="" headers="{\\"x-id\\":\\"1\\"}" method=GET mtls=true path="/a b"')


async def test_stderr_stream(capsys: pytest.CaptureFixture[str]) -> None:
    await run(make({"logStream": "STDERR"}), logentry({"a": 1}))
    captured = capsys.readouterr()
    assert captured.out == "" and json.loads(captured.err)["a"] == 1


# ---- levels ------------------------------------------------------------------------------

async def test_istios_default_severity_table_maps_levels(
        capsys: pytest.CaptureFixture[str]) -> None:
    await run(make({}), *(logentry({"s": s}, severity=s) for s in
                          ("Default", "warn", "WARNING", "ERR", "fatal", "Error")))
    levels = [r["level"] for r in json_lines(capsys.readouterr().out)]
    # "Error" is not in Istio's table (it is case-sensitive), so it is INFO, as in Mixer.
    assert levels == ["info", "warn", "warn", "error", "error", "info"]


async def test_own_severity_levels_replace_the_default_table(
        capsys: pytest.CaptureFixture[str]) -> None:
    await run(make({"severityLevels": {"Bad": "ERROR"}}),
              logentry({}, severity="Bad"), logentry({}, severity="ERROR"))
    assert [r["level"] for r in json_lines(capsys.readouterr().out)] == ["error", "info"]


async def test_output_level_drops_lower_lines_and_metric_level_applies_to_metrics(
        capsys: pytest.CaptureFixture[str]) -> None:
    await run(make({"outputLevel": "WARNING", "metricLevel": "ERROR"}),
              logentry({"n": 1}, severity="info"), logentry({"n": 2}, severity="warning"),
              metric(1, {}))
    records = json_lines(capsys.readouterr().out)
    assert [(r["level"], r.get("n")) for r in records] == [("warn", 2), ("error", None)]


# ---- secrets -----------------------------------------------------------------------------

async def test_secrets_are_redacted_in_maps_and_by_variable_name(
        capsys: pytest.CaptureFixture[str]) -> None:
    await run(make({}), logentry({
        "requestHeaders": {"Authorization": "Bearer abc", "cookie": "sid=1",
                           "x-api-key": "k", "accept": "*/*"},
        "apiKey": "k2", "request.api_key": "k3", "user": "alice"}),
        metric(1, {"set-cookie": "sid=2", "code": 200}))
    out = capsys.readouterr().out
    entry, point = json_lines(out)
    assert entry["requestHeaders"] == {"Authorization": REDACTED, "cookie": REDACTED,
                                       "x-api-key": REDACTED, "accept": "*/*"}
    assert entry["apiKey"] == entry["request.api_key"] == REDACTED
    assert entry["user"] == "alice"
    assert point["set-cookie"] == REDACTED and point["code"] == 200
    for secret in ("abc", "sid=1", "k2", "k3", "sid=2"):
        assert secret not in out


async def test_secrets_are_redacted_in_key_value_lines_too(
        capsys: pytest.CaptureFixture[str]) -> None:
    await run(make({"outputAsJson": False}), logentry({"h": {"proxy-authorization": "p"}}))
    out = capsys.readouterr().out
    assert REDACTED in out and '\\"p\\"' not in out


# ---- files -------------------------------------------------------------------------------

async def test_file_output_creates_directories_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "access.log"
    await run(make({"logStream": "FILE", "outputPath": str(path)}), logentry({"n": 1}))
    await run(make({"logStream": "FILE", "outputPath": str(path)}),
              logentry({"n": 2}), logentry({"n": 3}))
    assert [r["n"] for r in json_lines(path.read_text())] == [1, 2, 3]


async def test_lines_are_on_disk_after_each_batch_not_only_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    adapter = make({"logStream": "FILE", "outputPath": str(path)})
    await adapter.start()
    await adapter.report([logentry({"n": 1})])
    assert json_lines(path.read_text())[0]["n"] == 1
    await adapter.stop()


def rotating(path: Path, **extra: Any) -> dict[str, Any]:
    # 250 bytes: room for two of these 98-byte lines, so the third rotates.
    return {"logStream": "ROTATED_FILE", "outputPath": str(path),
            "maxMegabytesBeforeRotation": 250 / (1024 * 1024), **extra}


def numbers(path: Path) -> list[int]:
    return [r["n"] for r in json_lines(path.read_text())]


async def test_rotation_by_size_keeps_the_newest_backups_first(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    await run(make(rotating(path)), *(logentry({"n": n}) for n in range(7)))
    assert all(p.stat().st_size <= 250 for p in tmp_path.iterdir())
    assert numbers(path) == [6]
    assert numbers(tmp_path / "access.log.1") == [4, 5]
    assert numbers(tmp_path / "access.log.2") == [2, 3]
    assert numbers(tmp_path / "access.log.3") == [0, 1]


async def test_rotation_keeps_at_most_max_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    await run(make(rotating(path, maxRotatedFiles=2)), *(logentry({"n": n}) for n in range(9)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "access.log", "access.log.1", "access.log.2"]
    assert numbers(tmp_path / "access.log.2") == [4, 5]


async def test_rotation_counts_what_the_file_already_holds(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text("x" * 250 + "\n")
    await run(make(rotating(path)), logentry({"n": 0}))
    assert numbers(path) == [0]
    assert (tmp_path / "access.log.1").read_text() == "x" * 250 + "\n"


async def test_rotation_drops_backups_older_than_max_days(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    clock = FakeClock()
    clock.at = dt.datetime.now(UTC)
    old = tmp_path / "access.log.1"
    old.write_text("old\n")
    ten_days_ago = (clock.at - dt.timedelta(days=10)).timestamp()
    os.utime(old, (ten_days_ago, ten_days_ago))
    await run(make(rotating(path, maxDaysBeforeRotation=7), clock),
              *(logentry({"n": n}) for n in range(3)))
    backups = sorted(p.name for p in tmp_path.iterdir())
    # the old backup became .2 at the rotation and was then pruned for its age
    assert backups == ["access.log", "access.log.1"]
    assert numbers(tmp_path / "access.log.1") == [0, 1]


# ---- failures never escape report() ------------------------------------------------------

async def test_an_unwritable_file_is_an_error_status_counted_and_logged(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    errors = Errors()
    with capture_logs() as logs:
        adapter = make({"logStream": "FILE", "outputPath": str(blocker / "a.log")},
                       errors=errors)
        await adapter.start()
        assert adapter.status is Status.ERROR
        await adapter.report([logentry({"n": 1}), logentry({"n": 2})])  # must not raise
        await adapter.stop()
    assert errors.count == 2  # the open at start, the failed batch
    assert any("2 lines lost" in e["event"] and e["log_level"] == "error" for e in logs)


async def test_the_file_is_opened_again_once_it_can_be(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("")
    adapter = make({"logStream": "FILE", "outputPath": str(blocker / "a.log")})
    await adapter.start()
    blocker.unlink()
    await adapter.report([logentry({"n": 1})])
    await adapter.stop()
    assert adapter.status is not Status.ERROR
    assert numbers(blocker / "a.log") == [1]


async def test_an_unencodable_instance_is_counted_and_the_rest_of_the_batch_written(
        capsys: pytest.CaptureFixture[str]) -> None:
    errors = Errors()
    with capture_logs() as logs:
        await run(make({}, errors=errors), logentry({"n": 1}), logentry({"bad": object()}),
                  logentry({"n": 3}))
    assert [r["n"] for r in json_lines(capsys.readouterr().out)] == [1, 3]
    assert errors.count == 1
    assert [e["count"] for e in logs if e["event"] == "stdio: instances not written"] == [1]


# ---- params ------------------------------------------------------------------------------

def istio_handler_params(name: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((DATA / "istio_prometheus_handler.yaml").read_text())
    return next(d for d in docs if d["metadata"]["name"] == name)["spec"]["params"]


def test_istios_stdio_handler_loads_with_istios_defaults() -> None:
    params = StdioParams.model_validate(istio_handler_params("stdio"))
    assert params.output_as_json and params.log_stream == "STDOUT"
    assert params.severity_levels["WARN"] == "WARNING"
    assert (params.max_megabytes_before_rotation, params.max_days_before_rotation,
            params.max_rotated_files) == (100, 30, 1000)


def test_istio_names_other_spellings_and_protobuf_field_names_are_accepted() -> None:
    a = StdioParams.model_validate({"outputStream": "STDERR", "maxBackupsBeforeRotation": 5})
    b = StdioParams.model_validate({"log_stream": "STDERR", "max_rotated_files": 5})
    c = StdioParams.model_validate({"logStream": "STDERR", "maxRotatedFiles": 5})
    assert a == b == c


@pytest.mark.parametrize(("params", "loc", "message"), [
    ({"logStream": "FILE"}, (), "outputPath is required when logStream is FILE"),
    ({"logStream": "ROTATED_FILE"}, (), "outputPath is required when logStream is ROTATED"),
    ({"outputPath": "/tmp/x.log"}, (), "outputPath cannot be set when logStream is STDOUT"),
    ({"logStream": "SYSLOG"}, ("logStream",), "Input should be 'STDOUT'"),
    ({"severityLevels": {"x": "DEBUG"}}, ("severityLevels", "x"), "Input should be 'INFO'"),
    ({"maxRotatedFiles": -1}, ("maxRotatedFiles",), "greater than or equal to 0"),
    ({"outputAsJSON": True}, ("outputAsJSON",), "Extra inputs are not permitted"),
])
def test_bad_params_are_errors_naming_the_field(params: dict[str, Any], loc: tuple[str, ...],
                                                message: str) -> None:
    with pytest.raises(ValidationError) as info:
        StdioParams.model_validate(params)
    (error,) = info.value.errors()
    assert error["loc"] == loc and message in error["msg"]


def test_params_are_frozen_and_every_field_is_described() -> None:
    schema = StdioParams.model_json_schema()
    assert all(p.get("description") for p in schema["properties"].values())
    assert "logStream" in schema["properties"]
    with pytest.raises(ValidationError):
        StdioParams().log_stream = "STDERR"  # type: ignore[misc]


def test_registers_itself_through_the_hook() -> None:
    registry = AdapterRegistry()
    mixerhub_register_adapters(registry)
    assert registry.get("stdio") is StdioAdapter
    assert StdioAdapter.templates == {"logentry", "metric"}
