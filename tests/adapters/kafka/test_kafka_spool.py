"""The on-disk spool: order, limits, torn writes, the lock; and the record renderer."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from pathlib import Path

from kafkahub import RECORD_SCHEMA

from mixerhub.adapters.kafka.records import (Bound, JsonRedacted, OutRecord, RecordRenderer,
                                             key_text, reporter_of)
from mixerhub.adapters.kafka.spool import Spool
from mixerhub.attributes.bag import AttributeBag
from mixerhub.decisions import IdSource
from mixerhub.expr import compile_expression
from mixerhub.jsonform import to_json
from mixerhub.redact import DEFAULT_SECRET_KEYS, Redactor
from mixerhub.templates.instance import Instance

T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)


def records(n: int, start: int = 0) -> list[OutRecord]:
    return [OutRecord(f"k\t{i}" if i % 2 else None, json.dumps({"n": i}).encode(), 1000 + i)
            for i in range(start, start + n)]


def as_tuples(items: list[OutRecord]) -> list[tuple[str | None, bytes, int]]:
    return [(r.key, r.value, r.timestamp_ms) for r in items]


def drain(spool: Spool) -> list[OutRecord]:
    out = []
    while (segment := spool.oldest()) is not None:
        out += segment.records
        spool.remove(segment.seq)
    return out


def test_records_come_back_in_order_across_segments_and_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    assert spool.open()
    assert spool.append(records(30)) == 30
    spool.close()
    assert len(list(tmp_path.glob("*.spool"))) >= 3  # segments of ~200 bytes
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    assert again.open()
    assert again.size > 0
    assert as_tuples(drain(again)) == as_tuples(records(30))
    assert not again and list(tmp_path.glob("*.spool")) == []
    again.close()


def test_a_segment_is_deleted_only_when_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    spool.append(records(3))
    first = spool.oldest()
    assert first is not None and len(first.records) == 3
    again = spool.oldest()  # not removed yet: delivered again, whole (at-least-once)
    assert again is not None and again.seq == first.seq
    spool.remove(first.seq)
    assert spool.oldest() is None
    spool.close()


def test_the_spool_stops_at_its_limit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    spool.open()
    written = spool.append(records(20))
    assert 0 < written < 20
    assert spool.size <= 100
    assert spool.append(records(1)) == 0
    assert as_tuples(drain(spool)) == as_tuples(records(written))
    assert spool.append(records(1)) == 1  # room again once delivered
    spool.close()


def test_a_torn_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    spool.append(records(2))
    spool.close()
    [segment] = tmp_path.glob("*.spool")
    with segment.open("ab") as file:
        file.write(b'"k"\t12\t{"half":')  # the process died in the middle of a write
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    read = spool.oldest()
    assert read is not None
    assert (len(read.records), read.bad_lines) == (2, 1)
    spool.close()


def test_one_holder_at_a_time(tmp_path: Path) -> None:
    first, second = Spool(tmp_path, 1 << 20), Spool(tmp_path, 1 << 20)
    assert first.open()
    assert not second.open()
    first.close()
    assert second.open()
    second.close()


# ---- records -----------------------------------------------------------------------------

def render(instance: Instance, key: str | None = None,
           reporter: dict[str, str] | None = None) -> dict[str, object]:
    out = RecordRenderer("kafka.handler.ns", DEFAULT_SECRET_KEYS, IdSource())(
        Bound(instance, key, reporter, T0))
    assert out.key == key
    value: dict[str, object] = json.loads(out.value)
    assert list(RECORD_SCHEMA.iter_errors(value)) == []
    return value


def test_a_metric_record() -> None:
    value = render(Instance("rc.metric.ns", "metric", {
        "value": dt.timedelta(milliseconds=250),
        "dimensions": {"ip": ipaddress.ip_address("2001:db8::1"), "ok": True},
        "monitored_resource_type": None}))
    assert value["timestamp"] == "2026-11-30T12:00:00Z"  # received: a metric has no time
    assert value["fields"] == {"value": "0.250s", "dimensions": {"ip": "2001:db8::1",
                                                                 "ok": True}}
    assert value["reporter"] is None


def test_a_logentry_record_takes_its_own_time_and_hides_secrets() -> None:
    when = T0 + dt.timedelta(seconds=5)
    value = render(Instance("log.logentry.ns", "logentry", {
        "timestamp": when, "severity": "Error",
        "variables": {"cookie": "id=1", "user": "alice", "X-API-Key": "k",
                      "headers": {"Authorization": "Basic x", "accept": "*/*"}}}),
        key="alice", reporter={"kind": "outbound", "uid": "kubernetes://p"})
    assert value["timestamp"] == "2026-11-30T12:00:05Z"
    assert value["fields"]["variables"] == {  # type: ignore[index]
        "cookie": "[REDACTED]", "user": "alice", "X-API-Key": "[REDACTED]",
        "headers": {"Authorization": "[REDACTED]", "accept": "*/*"}}


def test_keys_are_text_whatever_the_type() -> None:
    bag = AttributeBag({"response.code": 503, "source.ip": ipaddress.ip_address("10.0.0.7"),
                        "connection.mtls": True})
    assert key_text(compile_expression("response.code"), bag) == "503"
    assert key_text(compile_expression("source.ip"), bag) == "10.0.0.7"
    assert key_text(compile_expression("connection.mtls"), bag) == "true"
    assert key_text(compile_expression("source.uid"), bag) is None  # missing: no key
    assert key_text(None, bag) is None


def test_the_reporter_comes_from_context_attributes() -> None:
    assert reporter_of({"context.reporter.kind": "inbound",
                        "context.reporter.uid": "kubernetes://a"}) == {
        "kind": "inbound", "uid": "kubernetes://a"}
    assert reporter_of({"source.uid": "x"}) is None


def test_the_fast_json_form_is_the_hub_json_form_redacted() -> None:
    value = {"a": 1, "b": 2.5, "c": [T0, dt.timedelta(seconds=3)], "Cookie": "x",
             "nested": {"Authorization": "t", "ip": ipaddress.ip_address("10.0.0.1"),
                        "raw": b"\x00\x01", "nan": float("nan"), "none": None},
             "inst": Instance("s.kind.ns", "struct", {"api_key": "k", "n": True})}
    expected = Redactor(DEFAULT_SECRET_KEYS)(to_json(value))
    assert JsonRedacted(DEFAULT_SECRET_KEYS)(value) == expected


def test_records_are_the_hub_json_form_redacted_whatever_the_order_of_shapes() -> None:
    # The renderer plans its work per (keys, value types): the same keys with other
    # types (a map where a string was, a secret inside it) must still come out redacted.
    renderer = RecordRenderer("kafka.handler.ns", DEFAULT_SECRET_KEYS, IdSource())
    shapes = [
        {"user": "alice", "headers": "none", "n": 1, "ratio": 0.5},
        {"user": "bob", "headers": {"Cookie": "c", "accept": "*/*"}, "n": 2, "ratio": 1.5},
        {"user": None, "headers": {"cookie": "c", "x": {"api_key": "k"}}, "n": None,
         "ratio": float("inf")},
        {"user": "carol", "headers": {"Cookie": "c", "accept": "*/*"}, "n": 3,
         "ratio": [float("nan"), 1.0, T0]},
        {"user": "alice", "headers": "none", "n": 1, "ratio": 0.5},
        {"when": T0, "ip": ipaddress.ip_address("10.0.0.1"), "took": dt.timedelta(seconds=1),
         "raw": b"\x01", "inst": Instance("s.kind.ns", "struct", {"cookie": "x", "k": 1})},
    ]
    for variables in shapes * 2:
        out = renderer(Bound(Instance("log.logentry.ns", "logentry",
                                      {"variables": variables, "severity": None}),
                             None, None, T0))
        fields = json.loads(out.value)["fields"]
        expected = Redactor(DEFAULT_SECRET_KEYS)(to_json({"variables": variables}))
        assert fields == expected
