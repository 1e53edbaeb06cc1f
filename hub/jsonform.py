"""The one JSON form of attribute values (``docs/json.md``).

Used wherever attributes leave or enter the hub as JSON: ``POST /v1/check``, ``mixerhub
eval --attributes``, test cases, recorded traffic, Kafka records, stdio lines, /debug.

JSON has no time, duration, address or byte types, so those travel as text and the
reader needs the attribute manifest to know which text is a time: :func:`to_json` needs
no manifest, :func:`values_from_json` does.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from mixerhub.attributes.types import TEXT_TYPES, Manifest, ValueType, type_of_value
from mixerhub.errors import AttributeJSONError
from mixerhub.expr.values import format_rfc3339, parse_go_duration, parse_ip, parse_rfc3339
from mixerhub.templates.instance import Instance

__all__ = ["format_duration", "parse_duration", "to_json", "values_from_json", "values_to_json",
           "verdict_to_json"]

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# protobuf's JSON form: signed seconds, up to nine fraction digits, then "s".
_PROTO_DURATION = re.compile(r"(-)?(\d+)(?:\.(\d{1,9}))?s\Z")
# Non-finite doubles as protobuf's JSON form writes them (plain JSON has no NaN).
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# ---- Python value → JSON ----------------------------------------------------------------

def to_json(value: Any) -> Any:
    """``value`` as JSON-able data: str/int/bool as they are, the other types as text."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _non_finite_text(value)
    if isinstance(value, Instance):
        return to_json(value.as_dict())
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return _scalar_text(value)


def values_to_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """A bag's values (name → Python value) as a JSON object."""
    return {name: to_json(value) for name, value in values.items()}


def _scalar_text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"no JSON form for a {type(value).__name__}")


def _non_finite_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def format_timestamp(value: dt.datetime) -> str:
    """RFC 3339 in UTC with ``Z``; a naive time is taken as UTC, never as local time."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return format_rfc3339(value)


def format_duration(value: dt.timedelta) -> str:
    """protobuf's JSON text of a Duration: ``"3s"``, ``"0.250s"``, ``"-1.500s"``,
    ``"0.000001s"`` (0, 3 or 6 fraction digits, as protobuf prints them)."""
    days, seconds, micros = value.days, value.seconds, value.microseconds
    if days < 0:  # a negative timedelta keeps days negative and the rest positive
        total = -(days * 86_400_000_000 + seconds * 1_000_000 + micros)
        seconds, micros = divmod(total, 1_000_000)
        sign = "-"
    else:
        seconds += days * 86_400
        sign = ""
    if micros == 0:
        return f"{sign}{seconds}s"
    if micros % 1000 == 0:
        return f"{sign}{seconds}.{micros // 1000:03d}s"
    return f"{sign}{seconds}.{micros:06d}s"


def parse_duration(text: str) -> dt.timedelta | None:
    """protobuf's Duration text, or Go's duration text ("10ms", "1m30s") for hand-written
    input; None if it is neither. Digits past microseconds are dropped."""
    found = _PROTO_DURATION.match(text)
    if found is None:
        return parse_go_duration(text)
    micros = int(found.group(2)) * 1_000_000 + int((found.group(3) or "0").ljust(9, "0")[:6])
    return dt.timedelta(microseconds=-micros if found.group(1) else micros)


# ---- JSON → Python values ---------------------------------------------------------------

def values_from_json(obj: Mapping[str, Any], manifest: Manifest) -> dict[str, Any]:
    """A JSON object of attributes as bag values, typed by ``manifest``.

    Names the manifest does not declare take the type their JSON value suggests (string,
    integer, number, boolean, object of strings). Raises :class:`AttributeJSONError`
    naming the attribute and the type it needed.
    """
    if not isinstance(obj, Mapping):
        raise AttributeJSONError(f"attributes must be a JSON object, got {_json_kind(obj)}")
    return {name: _from_json(name, value, manifest.get(name)) for name, value in obj.items()}


def _from_json(name: str, value: Any, declared: ValueType | None) -> Any:
    value_type = declared if declared is not None else _inferred_type(name, value)
    try:
        return _PARSERS[value_type](value)
    except (TypeError, ValueError) as exc:
        raise AttributeJSONError(
            f"attribute {name!r}: expected {value_type.value} ({_FORMS[value_type]}), "
            f"got {_json_kind(value)} {_preview(value)}{_reason(exc)}") from None


def _inferred_type(name: str, value: Any) -> ValueType:
    """A JSON value's natural type (the bag's own rule), when the manifest does not say."""
    if not isinstance(value, Mapping) or all(isinstance(v, str) for v in value.values()):
        try:
            return type_of_value(dict(value) if isinstance(value, Mapping) else value)
        except TypeError:
            pass
    raise AttributeJSONError(
        f"attribute {name!r}: not in the attribute manifest, and a JSON {_json_kind(value)} "
        "does not say its type (use a string, number, boolean or object of strings)")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _int64(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError("out of the int64 range")
    return value


def _double(value: Any) -> float:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _parsed(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    """A parser of text that turns "could not parse" (None) into a ValueError."""
    def parser(value: Any) -> Any:
        result = parse(_text(value))
        if result is None:
            raise ValueError
        return result
    return parser


def _base64(text: str) -> bytes | None:
    # protobuf writes standard base64 and reads the URL-safe alphabet too.
    padded = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error:
        return None


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError
    if not all(isinstance(v, str) for v in value.values()):
        raise ValueError("every value of the object must be a string")
    return dict(value)


_PARSERS: dict[ValueType, Callable[[Any], Any]] = {
    **{t: _text for t in TEXT_TYPES},
    ValueType.INT64: _int64,
    ValueType.DOUBLE: _double,
    ValueType.BOOL: _bool,
    ValueType.TIMESTAMP: _parsed(parse_rfc3339),
    ValueType.DURATION: _parsed(parse_duration),
    ValueType.IP_ADDRESS: _parsed(parse_ip),
    ValueType.BYTES: _parsed(_base64),
    ValueType.STRING_MAP: _string_map,
}

# How each type is written, for error messages.
_FORMS: dict[ValueType, str] = {
    **{t: "a string" for t in TEXT_TYPES},
    ValueType.INT64: "an integer",
    ValueType.DOUBLE: "a number",
    ValueType.BOOL: "true or false",
    ValueType.TIMESTAMP: 'RFC 3339 text, e.g. "2026-11-30T12:00:00Z"',
    ValueType.DURATION: 'duration text, e.g. "0.250s"',
    ValueType.IP_ADDRESS: 'address text, e.g. "10.0.0.7"',
    ValueType.BYTES: "base64 text",
    ValueType.STRING_MAP: "an object of strings",
}


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)):
        return "number"
    return "array" if isinstance(value, list) else "object"


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _reason(exc: Exception) -> str:
    return f": {exc}" if str(exc) else ""


# ---- verdicts ----------------------------------------------------------------------------

def verdict_to_json(outcome: Any) -> dict[str, Any]:
    """A :class:`~mixerhub.verdict.CheckOutcome` in the JSON form (``docs/json.md``)."""
    from mixerhub.verdict import http_status

    v = outcome.verdict
    out: dict[str, Any] = {
        "status": {"code": v.code, "message": v.message},
        "http_status": v.direct_response_code or http_status(v.code),
        "valid_duration": format_duration(v.valid_duration),
        "valid_use_count": v.valid_use_count,
        "referenced": sorted({r.notation() for r in v.references}),
        "request_header_operations": [_header_op(op) for op in v.request_header_ops],
        "response_header_operations": [_header_op(op) for op in v.response_header_ops],
    }
    if v.direct_response_body:
        out["body"] = v.direct_response_body
    if outcome.quotas:
        out["quotas"] = {name: _grant(g) for name, g in outcome.quotas.items()}
    return out


def _header_op(op: Any) -> dict[str, str]:
    return {"name": op.name, "value": op.value, "operation": op.operation.name}


def _grant(grant: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"granted_amount": grant.granted_amount,
                           "valid_duration": format_duration(grant.valid_duration),
                           "status": {"code": grant.code, "message": grant.message}}
    for name in ("limit", "remaining"):
        if getattr(grant, name) is not None:
            out[name] = getattr(grant, name)
    if grant.reset is not None:
        out["reset"] = format_duration(grant.reset)
    return out
