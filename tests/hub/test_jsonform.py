"""The JSON form of attribute values: what each type looks like, typed reading, errors."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from hypothesis import given
from hypothesis import strategies as st

from mixerhub.attributes.types import ValueType as T
from mixerhub.attributes.types import default_manifest
from mixerhub.errors import AttributeJSONError
from mixerhub.jsonform import (format_duration, parse_duration, to_json, values_from_json,
                               values_to_json)
from mixerhub.templates.instance import Instance

UTC = dt.timezone.utc


@pytest.mark.parametrize(("value", "expected"), [
    ("text", "text"), (7, 7), (2.5, 2.5), (True, True), (None, None),
    (dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC), "2026-11-30T12:00:00Z"),
    (dt.datetime(2026, 11, 30, 13, 0, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=1))),
     "2026-11-30T12:00:00.250000Z"),
    (dt.datetime(2026, 11, 30, 12, 0), "2026-11-30T12:00:00Z"),  # naive is UTC, not local
    (dt.timedelta(milliseconds=250), "0.250s"),
    (dt.timedelta(seconds=3), "3s"),
    (dt.timedelta(seconds=-1.5), "-1.500s"),
    (dt.timedelta(microseconds=1), "0.000001s"),
    (ipaddress.ip_address("10.0.0.7"), "10.0.0.7"),
    (ipaddress.ip_address("2001:db8::1"), "2001:db8::1"),
    (b"\x00\xffhi", "AP9oaQ=="),
    (math.inf, "Infinity"), (-math.inf, "-Infinity"),
    ({"a": {"b": dt.timedelta(seconds=1)}}, {"a": {"b": "1s"}}),
])
def test_each_type_has_one_json_form(value: Any, expected: Any) -> None:
    assert to_json(value) == expected


def test_nan_becomes_protobufs_text_so_the_output_stays_strict_json() -> None:
    assert to_json(math.nan) == "NaN"
    json.dumps(to_json({"x": math.nan}), allow_nan=False)  # raises if NaN leaked


def test_an_instance_is_its_fields_as_plain_data() -> None:
    inner = Instance("sub", "struct", {"user": "u", "since": dt.timedelta(seconds=2)})
    outer = Instance("authz.instance.istio-system", "authorization",
                     {"subject": inner, "ip": ipaddress.ip_address("::1")})
    assert to_json(outer) == {"subject": {"user": "u", "since": "2s"}, "ip": "::1"}


def test_a_type_without_a_json_form_is_refused_not_stringified() -> None:
    with pytest.raises(TypeError, match="object"):
        to_json(object())


@given(st.timedeltas(min_value=dt.timedelta(days=-10_000), max_value=dt.timedelta(days=10_000)))
def test_duration_text_is_exactly_what_protobuf_writes(value: dt.timedelta) -> None:
    message = Duration()
    message.FromTimedelta(value)
    assert format_duration(value) == message.ToJsonString()


@pytest.mark.parametrize(("text", "expected"), [
    ("0.250s", dt.timedelta(milliseconds=250)), ("3s", dt.timedelta(seconds=3)),
    ("-1.5s", dt.timedelta(seconds=-1.5)), ("0.000000001s", dt.timedelta(0)),
    ("1.123456789s", dt.timedelta(seconds=1, microseconds=123456)),
    ("10ms", dt.timedelta(milliseconds=10)), ("1m30s", dt.timedelta(seconds=90)),
    ("soon", None), ("1.5", None), ("s", None),
])
def test_duration_text_read_in_protobuf_or_go_form(text: str, expected: Any) -> None:
    assert parse_duration(text) == expected


MANIFEST = {
    "request.host": T.STRING, "request.size": T.INT64, "ratio": T.DOUBLE,
    "connection.mtls": T.BOOL, "request.time": T.TIMESTAMP, "response.duration": T.DURATION,
    "source.ip": T.IP_ADDRESS, "payload": T.BYTES, "request.headers": T.STRING_MAP,
    "source.principal": T.URI,
}


def test_declared_types_turn_text_back_into_values() -> None:
    got = values_from_json({
        "request.host": "a.b", "request.size": 12, "ratio": 2, "connection.mtls": False,
        "request.time": "2026-11-30T13:00:00+01:00", "response.duration": "0.250s",
        "source.ip": "10.0.0.7", "payload": "AP9oaQ==", "request.headers": {"x": "1"},
        "source.principal": "spiffe://cluster.local/ns/default/sa/a",
    }, MANIFEST)
    assert got == {
        "request.host": "a.b", "request.size": 12, "ratio": 2.0, "connection.mtls": False,
        "request.time": dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
        "response.duration": dt.timedelta(milliseconds=250),
        "source.ip": ipaddress.ip_address("10.0.0.7"), "payload": b"\x00\xffhi",
        "request.headers": {"x": "1"},
        "source.principal": "spiffe://cluster.local/ns/default/sa/a",
    }
    assert isinstance(got["ratio"], float)


def test_url_safe_unpadded_base64_is_read_too() -> None:
    assert values_from_json({"payload": "-_8"}, MANIFEST) == {"payload": b"\xfb\xff"}


def test_non_finite_doubles_come_back_from_text() -> None:
    got = values_from_json({"ratio": "-Infinity"}, MANIFEST)
    assert got["ratio"] == -math.inf


@pytest.mark.parametrize(("name", "value", "message"), [
    ("request.host", 3, "attribute 'request.host': expected STRING (a string), got number 3"),
    ("request.size", "12", "attribute 'request.size': expected INT64"),
    ("request.size", 1.5, "expected INT64 (an integer), got number 1.5"),
    ("request.size", True, "expected INT64 (an integer), got boolean True"),
    ("request.size", 1 << 63, "out of the int64 range"),
    ("ratio", "fast", "attribute 'ratio': expected DOUBLE"),
    ("connection.mtls", 1, "attribute 'connection.mtls': expected BOOL"),
    ("request.time", "yesterday", "attribute 'request.time': expected TIMESTAMP (RFC 3339"),
    ("response.duration", 0.25, "attribute 'response.duration': expected DURATION"),
    ("source.ip", "10.0.0.300", "attribute 'source.ip': expected IP_ADDRESS"),
    ("payload", "not base64!", "attribute 'payload': expected BYTES (base64 text)"),
    ("request.headers", {"x": 1}, "every value of the object must be a string"),
    ("request.headers", ["x"], "expected STRING_MAP (an object of strings), got array"),
    ("request.host", None, "expected STRING (a string), got null"),
])
def test_a_value_of_the_wrong_type_names_the_attribute_and_the_type(
        name: str, value: Any, message: str) -> None:
    with pytest.raises(AttributeJSONError) as info:
        values_from_json({name: value}, MANIFEST)
    assert message in str(info.value)
    assert info.value.code == "attribute_json_error"


def test_undeclared_names_take_the_type_their_json_suggests() -> None:
    got = values_from_json({"a": "x", "b": 3, "c": 3.0, "d": True, "e": {"k": "v"},
                            "f": "2026-11-30T12:00:00Z"}, {})
    assert got == {"a": "x", "b": 3, "c": 3.0, "d": True, "e": {"k": "v"},
                   "f": "2026-11-30T12:00:00Z"}  # text stays text without a declaration
    assert type(got["b"]) is int and type(got["c"]) is float


@pytest.mark.parametrize("value", [None, [1], {"k": 1}])
def test_undeclared_names_whose_json_says_no_type_are_errors(value: Any) -> None:
    with pytest.raises(AttributeJSONError, match="attribute 'mystery': not in the attribute"):
        values_from_json({"mystery": value}, {})


def test_attributes_must_be_an_object() -> None:
    with pytest.raises(AttributeJSONError, match="must be a JSON object, got array"):
        values_from_json([1, 2], {})  # type: ignore[arg-type]


def test_istio_manifest_types_a_realistic_bag() -> None:
    bag = {
        "request.time": dt.datetime(2026, 11, 30, 12, 0, 1, 5, tzinfo=UTC),
        "response.duration": dt.timedelta(milliseconds=12),
        "source.ip": ipaddress.ip_address("10.0.0.7"),
        "request.headers": {"x-request-id": "r1", ":path": "/reviews/1"},
        "response.code": 503, "connection.mtls": True,
        "destination.service.host": "reviews.default.svc.cluster.local",
    }
    text = json.dumps(values_to_json(bag))
    assert values_from_json(json.loads(text), default_manifest()) == bag


# ---- the round trip, for every type -----------------------------------------------------

_TEXT = st.text(max_size=20)
_VALUES: dict[T, st.SearchStrategy[Any]] = {
    T.STRING: _TEXT, T.EMAIL_ADDRESS: _TEXT, T.URI: _TEXT, T.DNS_NAME: _TEXT,
    T.INT64: st.integers(-(1 << 63), (1 << 63) - 1),
    T.DOUBLE: st.floats(allow_nan=False),
    T.BOOL: st.booleans(),
    T.TIMESTAMP: st.datetimes(timezones=st.sampled_from(
        [UTC, dt.timezone(dt.timedelta(hours=-7))])),
    T.DURATION: st.timedeltas(min_value=dt.timedelta(days=-3650),
                              max_value=dt.timedelta(days=3650)),
    T.IP_ADDRESS: st.ip_addresses(),
    T.BYTES: st.binary(max_size=32),
    T.STRING_MAP: st.dictionaries(_TEXT, _TEXT, max_size=4),
}


@st.composite
def typed_bags(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, T]]:
    names = draw(st.lists(st.text(min_size=1, max_size=12), unique=True, max_size=8))
    manifest = {name: draw(st.sampled_from(list(T))) for name in names}
    values = {name: draw(_VALUES[t]) for name, t in manifest.items()}
    return values, manifest


@given(typed_bags())
def test_values_survive_the_json_round_trip(bag: tuple[dict[str, Any], dict[str, T]]) -> None:
    values, manifest = bag
    text = json.dumps(values_to_json(values), allow_nan=False)
    assert values_from_json(json.loads(text), manifest) == values


@given(st.dictionaries(st.text(max_size=8), st.one_of(
    _TEXT, _VALUES[T.INT64], st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
    _VALUES[T.STRING_MAP]), max_size=6))
def test_undeclared_json_values_round_trip_by_their_own_type(values: dict[str, Any]) -> None:
    got = values_from_json(json.loads(json.dumps(values_to_json(values))), {})
    assert got == values
    assert [type(v) for v in got.values()] == [type(v) for v in values.values()]
