"""Helpers shared by the built-in adapters' ``Params`` models.

Istio wrote durations as protobuf ``Duration`` values, which its YAML showed as strings in
Go's notation (``"5s"``, ``"500ms"``, ``"1m30s"``); hand-written configs also use plain
numbers of seconds. :data:`Duration` accepts both and yields a :class:`datetime.timedelta`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

# Longer units first inside the alternation so that "ms" is never read as "m" + "s".
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                 "m": 60.0, "h": 3600.0}
_HINT = "expected seconds as a number or a string such as '500ms', '5s', '1m' or '1h30m'"


def parse_duration(value: Any) -> dt.timedelta:
    """A non-negative duration from a timedelta, a number of seconds or a Go-style string.

    Raises ``ValueError`` (which pydantic reports against the field) for anything else.
    """
    if isinstance(value, dt.timedelta):
        return _non_negative(value, value)
    if isinstance(value, bool):  # bool is an int: `ttl: true` is a mistake, not 1 s
        raise ValueError(f"invalid duration {value!r}: {_HINT}")
    if isinstance(value, (int, float)):
        return _from_seconds(float(value), value)
    if isinstance(value, str):
        return _from_text(value.strip(), value)
    raise ValueError(f"invalid duration {value!r}: {_HINT}")


def format_duration(delta: dt.timedelta) -> str:
    """The inverse of :func:`parse_duration` for JSON and YAML output: ``"0.05s"``, ``"300s"``."""
    return f"{delta.total_seconds():.9f}".rstrip("0").rstrip(".") + "s"


def _from_text(text: str, original: str) -> dt.timedelta:
    negative = text.startswith("-")
    body = text[1:] if negative or text.startswith("+") else text
    if _NUMBER.fullmatch(body):  # "30" reads as seconds, like a bare number
        seconds = float(body)
    else:
        seconds = _sum_parts(body, original)
    return _from_seconds(-seconds if negative else seconds, original)


def _sum_parts(body: str, original: str) -> float:
    position, total = 0, 0.0
    for match in _PART.finditer(body):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(body) or not body:
        raise ValueError(f"invalid duration {original!r}: {_HINT}")
    return total


def _from_seconds(seconds: float, original: object) -> dt.timedelta:
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {original!r}: {_HINT}")
    try:
        return _non_negative(dt.timedelta(seconds=seconds), original)
    except OverflowError:
        raise ValueError(f"invalid duration {original!r}: too long") from None


def _non_negative(delta: dt.timedelta, original: object) -> dt.timedelta:
    if delta < dt.timedelta(0):
        raise ValueError(f"invalid duration {original!r}: must not be negative")
    return delta


_N = r"(\d+(\.\d*)?|\.\d+)"
_U = r"(ns|us|µs|μs|ms|s|m|h)"
_SCHEMA_PATTERN = rf"^\s*[+]?({_N}|({_N}{_U})+)\s*$"

#: A params field holding a duration. The JSON Schema and JSON output use the form YAML
#: configs use, not the ISO 8601 form pydantic would otherwise give a timedelta.
Duration = Annotated[
    dt.timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"anyOf": [
        {"type": "string", "pattern": _SCHEMA_PATTERN, "examples": ["500ms", "5s", "1m", "1h30m"]},
        {"type": "number", "minimum": 0},
    ]}),
]
