"""Recorded checks: one event per check from the engine (rules, snapshot version, secrets
redacted), a bounded rotating file, sinks that never hold up a check, and reading the
records back into the same values and verdicts."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mixerhub.app import Hub, Settings
from mixerhub.attributes.bag import Reference
from mixerhub.attributes.types import default_manifest
from mixerhub.cli import _with_recording, build_parser
from mixerhub.decisions import (DecisionEvent, DecisionReadError, DecisionRecorder, FileSink,
                                decision_files, encode_event, parse_reference, read_decisions)
from mixerhub.metrics import Metrics
from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.verdict import CheckOutcome, HeaderOp, HeaderOperation, QuotaGrant, Verdict

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = jsonschema.Draft202012Validator(
    json.loads((ROOT / "docs" / "schemas" / "decision-event.schema.json").read_text()))
T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)

CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: denyall, namespace: istio-system}
spec:
  compiledAdapter: denier
  params: {status: {code: 7, message: admins only}, validDuration: 10s}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: tag, namespace: istio-system}
spec:
  match: context.protocol == "http"
  requestHeaderOperations:
  - {name: x-checked, values: ['"yes"']}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: admin, namespace: istio-system}
spec:
  match: request.path.startsWith("/admin")
  actions:
  - {handler: denyall, instances: [nothing]}
"""


def bag(path: str) -> dict[str, Any]:
    return {"context.protocol": "http", "request.path": path, "request.api_key": "k-1",
            "request.headers": {"authorization": "Bearer t", "x-user": "alice"},
            "source.ip": ipaddress.ip_address("10.0.0.7"), "request.time": T0}


async def test_every_check_is_recorded_with_its_rules_and_no_secret(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(CONFIG)
    record = tmp_path / "checks.jsonl"
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", watch=False,
                       config=(str(tmp_path / "policy.yaml"),), record_checks=str(record)))
    await hub.start()
    assert hub.config.snapshot is not None
    version = hub.config.snapshot.version
    client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
    answers = [await client.check(bag(p)) for p in ("/admin/x", "/books", "/admin/y")]
    await client.close()
    await hub.stop()
    lines = record.read_text().splitlines()
    assert len(lines) == 3
    events = [json.loads(line) for line in lines]
    assert all(not list(SCHEMA.iter_errors(e)) for e in events)
    assert [e["rules"] for e in events] == [["tag.istio-system", "admin.istio-system"],
                                            ["tag.istio-system"],
                                            ["tag.istio-system", "admin.istio-system"]]
    assert [e["verdict"]["status"]["code"] for e in events] == [7, 0, 7]
    assert all(e["snapshot_version"] == version for e in events)
    assert len({e["id"] for e in events}) == 3
    attributes = events[1]["attributes"]
    assert attributes["request.api_key"] == "[REDACTED]"
    assert attributes["request.headers"] == {"authorization": "[REDACTED]", "x-user": "alice"}
    assert "request.path" in events[1]["verdict"]["referenced"]
    assert [a.verdict.code for a in answers] == [7, 0, 7]
    [first, second, third] = read_decisions(record)
    assert (second.verdict.code, second.verdict.rules) == (0, ("tag.istio-system",))
    assert second.verdict.request_header_ops == (HeaderOp("x-checked", "yes"),)
    assert second.values["source.ip"] == ipaddress.ip_address("10.0.0.7")
    assert (third.verdict.message, third.line) == ("admins only", 3)


def event(values: dict[str, Any], verdict: Verdict,
          quotas: dict[str, QuotaGrant] | None = None) -> DecisionEvent:
    return DecisionEvent("id-1", T0, values, CheckOutcome(verdict, quotas or {}), 4)


def test_values_and_verdicts_read_back_the_same() -> None:
    values = {"request.time": T0, "response.duration": dt.timedelta(milliseconds=250),
              "source.ip": ipaddress.ip_address("2001:db8::7"), "request.size": 2048,
              "connection.mtls": True, "my.score": 0.75, "request.path": "/r/1",
              "request.headers": {"x-user": "alice", ":path": "/r/1"},
              "connection.requested_server_name": "reviews", "my.raw": b"\x00\xffhi"}
    manifest = {**default_manifest()}
    from mixerhub.attributes.types import ValueType
    manifest["my.raw"] = ValueType.BYTES
    verdict = Verdict(7, "no", dt.timedelta(seconds=5, microseconds=250_000), 99,
                      (Reference("request.path", None, True),
                       Reference("request.headers", "x-user", True),
                       Reference("request.headers", "x-missing", False),
                       Reference("source.principal", None, False)),
                      (HeaderOp("x-a", "1", HeaderOperation.APPEND),),
                      (HeaderOp("x-b", "", HeaderOperation.REMOVE),), 302, "moved",
                      ("r1.ns", "r2.ns"))
    line = encode_event(event(values, verdict, {"q": QuotaGrant(3)}))
    assert not list(SCHEMA.iter_errors(json.loads(line)))
    [back] = read_decisions([line], manifest)
    assert back.values == values
    assert back.verdict == dataclass_sorted_refs(verdict)
    assert (back.id, back.time, back.snapshot_version) == ("id-1", T0, 4)


def dataclass_sorted_refs(verdict: Verdict) -> Verdict:
    """The JSON form lists references sorted by their notation."""
    import dataclasses

    refs = tuple(sorted(verdict.references, key=lambda r: r.notation()))
    return dataclasses.replace(verdict, references=refs)


def test_a_plain_denial_has_no_direct_response() -> None:
    [back] = read_decisions([encode_event(event({}, Verdict(16, "who?")))])
    assert (back.verdict.code, back.verdict.direct_response_code) == (16, 0)


@pytest.mark.parametrize("text", ["a", "-a", "m[k]", "-m[k]", "m[a.b]"])
def test_reference_notation_round_trips(text: str) -> None:
    assert parse_reference(text).notation() == text


def test_broken_lines_name_their_line_and_the_rest_is_read(tmp_path: Path) -> None:
    good = encode_event(event({"request.path": "/"}, Verdict())).decode()
    path = tmp_path / "traffic.jsonl"
    path.write_text("\n".join([
        good, "{not json", json.dumps({"schema_version": 9}), "",
        good.replace('"attributes":{"request.path":"/"}', '"attributes":{"request.size":"x"}'),
        good.replace('"verdict"', '"verdikt"'), good]) + "\n")
    errors: list[DecisionReadError] = []
    found = list(read_decisions(path, on_error=errors.append))
    assert [d.line for d in found] == [1, 7]
    assert [str(e) for e in errors] == [
        f"{path}:2: not JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{path}:3: unknown schema_version 9",
        f"{path}:5: attribute 'request.size': expected INT64 (an integer), got string 'x'",
        f"{path}:6: missing field 'verdict'",
    ]
    with pytest.raises(DecisionReadError, match=r"traffic.jsonl:2: not JSON"):
        list(read_decisions(path))


async def test_the_file_rotates_and_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "rec" / "checks.jsonl"
    sink = FileSink(path, max_bytes=1000, backups=2)
    await sink.start()
    lines = [json.dumps({"n": i, "pad": "x" * 80}).encode() for i in range(100)]
    for start in range(0, 100, 7):
        await sink.write(lines[start:start + 7])
    await sink.stop()
    files = decision_files(path)
    assert [f.name for f in files] == ["checks.jsonl.2", "checks.jsonl.1", "checks.jsonl"]
    assert all(f.stat().st_size <= 1000 for f in files)
    kept = [json.loads(line)["n"] for f in files for line in f.read_text().splitlines()]
    assert kept == list(range(100 - len(kept), 100))  # the newest, in order


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    async def start(self) -> None: ...

    async def write(self, lines: Any) -> None:
        self.lines += lines

    async def stop(self) -> None: ...


class StuckSink(ListSink):
    """A sink whose backend hangs (a disk or broker that never answers)."""

    name = "stuck"

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def write(self, lines: Any) -> None:
        await self.release.wait()


async def test_a_stuck_sink_holds_up_neither_checks_nor_the_other_sink() -> None:
    fast, stuck, metrics = ListSink(), StuckSink(), Metrics()
    recorder = DecisionRecorder([fast, stuck], metrics, queue_limit=100)
    await recorder.start()
    outcome = CheckOutcome(Verdict())
    for i in range(1000):
        recorder.record({"request.path": f"/{i}"}, outcome, 1)  # returns at once, always
        await asyncio.sleep(0)  # as a check would, giving the recorder its turn
    while len(fast.lines) < 1000:
        await asyncio.sleep(0.01)
    stuck.release.set()
    await recorder.stop()
    dropped = metrics.registry.get_sample_value("mixerhub_decision_events_total",
                                                {"sink": "stuck", "result": "dropped"})
    assert dropped is not None and dropped >= 1000 - 2 * 100
    assert [json.loads(x)["attributes"]["request.path"] for x in fast.lines] == [
        f"/{i}" for i in range(1000)]


def test_serve_flags_become_settings() -> None:
    args = build_parser().parse_args([
        "serve", "--record-checks", "c.jsonl", "--record-max-bytes", "5000",
        "--record-backups", "3", "--record-kafka", "h:9092", "--record-kafka-topic", "d"])
    settings = _with_recording(Settings(), args)
    assert (settings.record_checks, settings.record_max_bytes, settings.record_backups,
            settings.record_kafka, settings.record_kafka_topic,
            settings.record_kafka_spool) == ("c.jsonl", 5000, 3, "h:9092", "d", "")


async def test_checks_in_flight_at_shutdown_are_all_written(tmp_path: Path) -> None:
    # Stop while HTTP checks are still being answered: each one answered is in the file,
    # and a decision arriving after the recorder stopped is counted, not silently lost.
    import aiohttp

    (tmp_path / "policy.yaml").write_text(CONFIG)
    record = tmp_path / "checks.jsonl"
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", watch=False,
                       config=(str(tmp_path / "policy.yaml"),), record_checks=str(record)))
    await hub.start()
    answered = 0

    async def checks(session: aiohttp.ClientSession) -> None:
        nonlocal answered
        for i in range(200):
            try:
                async with session.post(f"http://127.0.0.1:{hub.http.port}/v1/check",
                                        json={"attributes": {"request.path": f"/{i}"}}) as r:
                    if r.status == 200:
                        answered += 1
            except aiohttp.ClientError:
                return  # the hub has stopped listening

    async with aiohttp.ClientSession() as session:
        load = [asyncio.create_task(checks(session)) for _ in range(4)]
        while answered < 20:
            await asyncio.sleep(0.01)
        await hub.stop()
        await asyncio.gather(*load)
    assert len(record.read_text().splitlines()) >= answered > 0
    assert hub.decisions is not None
    hub.decisions.record({"request.path": "/late"}, CheckOutcome(Verdict()), 1)
    late = hub.metrics.registry.get_sample_value("mixerhub_decision_events_total",
                                                 {"sink": "queue", "result": "dropped"})
    assert late == 1
