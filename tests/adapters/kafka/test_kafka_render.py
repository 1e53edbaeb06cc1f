"""Kafka record values written in C (adapters/kafka/_render.c) against the Python path.

For every instance the renderer either writes, in C, exactly the bytes the Python path
(a redacting walk + orjson) writes, or hands the record to the Python path. It must take
the records real configs make (access logs, metrics), or it would be useless: the plain
cases are checked to be taken by C, the rest to come out the same either way.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixerhub.adapters.kafka import records
from mixerhub.adapters.kafka.records import Bound, RecordRenderer
from mixerhub.redact import DEFAULT_SECRET_KEYS
from mixerhub.templates.instance import Instance

T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)
DEEP: Any = "x"
for _ in range(40):  # deeper than the C renderer goes
    DEEP = [DEEP]
SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

pytestmark = pytest.mark.skipif(records._render is None and not os.environ.get("CI"),
                                reason="the C renderer is not built here")


def test_ci_builds_the_c_renderer() -> None:
    assert records._render is not None, "setup.py's extension did not build"


def both(fields: dict[str, Any], reporter: dict[str, str] | None = None,
         received: dt.datetime = T0) -> tuple[Any, Any, bool]:
    """(C result, Python result, whether C took it): bytes, or the error's type."""
    results = []
    for native in (True, False):
        renderer = RecordRenderer("kafka.handler.ns", DEFAULT_SECRET_KEYS, lambda: "id-1")
        renderer.native = native
        try:
            results.append(renderer(Bound(Instance("log.logentry.ns", "logentry", fields),
                                          "k", reporter, received)).value)
        except Exception as exc:  # noqa: BLE001 - the comparison is the test
            results.append(type(exc))
    took = records._render.render(
        records._HEAD, "id-1", b',"timestamp":', received, "t", reporter, fields,
        frozenset(k.lower() for k in DEFAULT_SECRET_KEYS), {}, lambda v: str(v),
        "[REDACTED]") is not None
    return results[0], results[1], took


def test_access_log_records_are_written_in_c_the_same_bytes() -> None:
    fields = {"timestamp": T0, "severity": "Info", "variables": {
        "sourceIp": ipaddress.ip_address("10.12.0.7"), "user": "alice", "code": 200,
        "size": 1234, "latency": dt.timedelta(milliseconds=7), "ok": True,
        "ratio": 0.25, "path": "/ratings/0", "missing": None,
        "headers": {":authority": "ratings:9080", "Authorization": "Bearer t"}}}
    c_bytes, python_bytes, took = both(fields, {"kind": "inbound", "uid": "kubernetes://a"})
    assert took
    assert c_bytes == python_bytes
    value = json.loads(c_bytes)
    assert value["fields"]["variables"]["headers"]["Authorization"] == "[REDACTED]"
    assert value["fields"]["variables"]["missing"] is None  # only the fields drop None
    assert value["reporter"] == {"kind": "inbound", "uid": "kubernetes://a"}


@pytest.mark.parametrize("fields", [
    {"variables": {1: "a key that is not text"}},
    {"value": float("nan")},
    {"value": [1.0, float("-inf")]},
    {"value": 2**64},
    {"nested": Instance("s.kind.ns", "struct", {"cookie": "x", "n": 1})},
    {"deep": DEEP},
    {"raw": b"\x00\xff"},
    {"days": dt.timedelta(days=-999_999_999)},
])
def test_what_c_leaves_to_python_comes_out_the_same(fields: dict[str, Any]) -> None:
    c_bytes, python_bytes, _ = both(fields)
    assert c_bytes == python_bytes


def test_records_c_cannot_take_are_left_to_python() -> None:
    for fields in ({"variables": {1: "x"}}, {"value": float("nan")}, {"n": 2**64},
                   {"s": "\ud800"}):
        assert not both(fields)[2], fields


def test_text_that_is_not_utf8_fails_the_same_way() -> None:
    c_result, python_result, took = both({"user": "\ud800"})
    assert not took
    assert c_result is python_result and issubclass(c_result, TypeError)


def test_every_character_is_escaped_as_orjson_escapes_it() -> None:
    text = "".join(chr(i) for i in range(0x80)) + "é\u2028\U0001f600"
    c_bytes, python_bytes, took = both({"s": text, text: 1})
    assert took and c_bytes == python_bytes
    assert json.loads(c_bytes)["fields"] == {"s": text, text: 1}


def test_doubles_read_back_the_same_in_both() -> None:
    for value in (0.0, -0.0, 1.0, 0.1, 1e16, 1e-7, 1e22, 1.5e300, 5e-324, 123456789.125):
        c_bytes, python_bytes, took = both({"v": value})
        assert took
        assert c_bytes == python_bytes, value
        assert json.loads(c_bytes)["fields"]["v"] == value


def test_secret_keys_are_redacted_at_every_depth_whatever_their_case() -> None:
    c_bytes, python_bytes, _ = both({"Cookie": "x", "list": [{"X-API-KEY": "p", "a": 1}],
                                     "map": {"x": {"Api_Key": None}}, "token": None})
    assert c_bytes == python_bytes
    fields = json.loads(c_bytes)["fields"]
    assert fields == {"Cookie": "[REDACTED]", "list": [{"X-API-KEY": "[REDACTED]", "a": 1}],
                      "map": {"x": {"Api_Key": "[REDACTED]"}}}


def test_only_the_fields_are_redacted_as_in_python() -> None:
    renderers = []
    for native in (True, False):
        renderer = RecordRenderer("kafka.handler.ns", {"uid", "cookie"}, lambda: "id-1")
        renderer.native = native
        renderers.append(renderer)
    bound = Bound(Instance("log.logentry.ns", "logentry", {"uid": "u", "n": 1}), None,
                  {"kind": "inbound", "uid": "kubernetes://a"}, T0)
    c_bytes, python_bytes = (r(bound).value for r in renderers)
    assert c_bytes == python_bytes
    value = json.loads(c_bytes)
    assert value["reporter"]["uid"] == "kubernetes://a"
    assert value["fields"] == {"uid": "[REDACTED]", "n": 1}


# ---- generated -----------------------------------------------------------------------

keys = st.one_of(st.sampled_from(sorted(DEFAULT_SECRET_KEYS)).map(str.title),
                 st.sampled_from(["user", "path", "x-request-id", ":authority"]),
                 st.text(max_size=8))
leaves = st.one_of(
    st.none(), st.booleans(), st.text(max_size=12), st.integers(-(2**70), 2**70),
    st.floats(), st.just(T0), st.datetimes(timezones=st.just(dt.timezone.utc)),
    st.timedeltas(), st.ip_addresses(), st.binary(max_size=4))
values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(keys, inner, max_size=3)), max_leaves=12)


@SETTINGS
@given(st.dictionaries(keys, values, max_size=6),
       st.one_of(st.none(), st.fixed_dictionaries({"kind": st.text(max_size=5)})),
       st.sampled_from([T0, dt.datetime(2026, 1, 1, 0, 0, 0, 1)]))
def test_generated_records_come_out_the_same_in_both(fields: dict[str, Any],
                                                    reporter: Any,
                                                    received: dt.datetime) -> None:
    c_result, python_result, _ = both(fields, reporter, received)
    assert c_result == python_result
