"""What generated expression code calls at evaluation time: value checks, conversions,
comparisons for the typed strings and IPs, and the error constructors.

Everything here is handed to the generated code as a global; the code itself never reaches
builtins or the user's text.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from mixerhub.attributes.bag import MISSING
from mixerhub.attributes.types import ValueType
from mixerhub.expr import names
from mixerhub.expr.errors import EvaluationError
from mixerhub.expr.values import IPAddress, ip_key, parse_ip, parse_rfc3339

V = ValueType
_UTC = dt.UTC

# The exact class a well-formed bag holds for each type: generated code tests
# ``value.__class__ is not <class>`` and only then calls the slower coercer below.
FAST_CLASSES: dict[ValueType, type] = {
    V.STRING: str, V.EMAIL_ADDRESS: str, V.URI: str, V.DNS_NAME: str,
    V.INT64: int, V.DOUBLE: float, V.BOOL: bool, V.BYTES: bytes,
    V.TIMESTAMP: dt.datetime, V.DURATION: dt.timedelta,
    V.IP_ADDRESS: ipaddress.IPv4Address, V.STRING_MAP: dict,
}  # fmt: skip


def lookup_failed(name: str) -> EvaluationError:
    return EvaluationError(f"lookup failed: '{name}'", attribute=name)


def bad_value(name: str, value: object, value_type: ValueType) -> EvaluationError:
    shown = str(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return EvaluationError(
        f"bad value for attribute '{name}': '{shown}' ({type(value).__name__}) is not {value_type.value}",
        attribute=name,
    )


def _as_text(name: str, value: object, value_type: ValueType) -> str:
    if isinstance(value, str):
        return str(value)
    raise bad_value(name, value, value_type)


def _as_int(name: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise bad_value(name, value, V.INT64)


def _as_double(name: str, value: object) -> float:
    # JSON and hand-built bags often carry 1 for 1.0; accept it, never a bool.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise bad_value(name, value, V.DOUBLE)


def _as_bool(name: str, value: object) -> bool:
    raise bad_value(name, value, V.BOOL)


def _as_timestamp(name: str, value: object) -> dt.datetime:
    if isinstance(value, dt.datetime):
        # A naive time is taken as UTC (the bag's convention) so comparisons cannot fail.
        return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
    raise bad_value(name, value, V.TIMESTAMP)


def _as_duration(name: str, value: object) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    raise bad_value(name, value, V.DURATION)


def _as_ip(name: str, value: object) -> object:
    # Raw 4/16-byte addresses (the wire form) pass through unchanged; comparisons normalise.
    if isinstance(value, ipaddress.IPv6Address) or ip_key(value) is not None:
        return value
    raise bad_value(name, value, V.IP_ADDRESS)


def _as_map(name: str, value: object) -> object:
    if isinstance(value, Mapping):
        return value
    raise bad_value(name, value, V.STRING_MAP)


def _as_bytes(name: str, value: object) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise bad_value(name, value, V.BYTES)


def _text_coercer(value_type: ValueType) -> Callable[[str, object], str]:
    return lambda name, value: _as_text(name, value, value_type)


COERCERS: dict[ValueType, Callable[[str, Any], Any]] = {
    V.STRING: _text_coercer(V.STRING), V.EMAIL_ADDRESS: _text_coercer(V.EMAIL_ADDRESS),
    V.URI: _text_coercer(V.URI), V.DNS_NAME: _text_coercer(V.DNS_NAME),
    V.INT64: _as_int, V.DOUBLE: _as_double, V.BOOL: _as_bool, V.BYTES: _as_bytes,
    V.TIMESTAMP: _as_timestamp, V.DURATION: _as_duration,
    V.IP_ADDRESS: _as_ip, V.STRING_MAP: _as_map,
}  # fmt: skip


# --- conversion functions ----------------------------------------------------------------


def to_ip(text: str) -> IPAddress:
    address = parse_ip(text)
    if address is None:
        raise EvaluationError(f"ip(): '{text}' is not an IP address")
    return address


def to_timestamp(text: str) -> dt.datetime:
    stamp = parse_rfc3339(text)
    if stamp is None:
        raise EvaluationError(f"timestamp(): '{text}' is not an RFC 3339 time such as '2006-01-02T15:04:05Z'")
    return stamp


def to_dns_name(text: str) -> str:
    problem = names.dns_name_problem(text)
    if problem is not None:
        raise EvaluationError(f"dnsName(): '{text}' is not a DNS name: {problem}")
    return text


def to_email(text: str) -> str:
    parsed = names.parse_email(text)
    if isinstance(parsed, str):
        raise EvaluationError(f"email(): '{text}' is not an e-mail address: {parsed}")
    return text


def to_uri(text: str) -> str:
    parsed = names.parse_uri(text)
    if isinstance(parsed, str):
        raise EvaluationError(f"uri(): '{text}' is not a URI: {parsed}")
    return text


# --- comparisons and string functions ----------------------------------------------------


def ip_equal(a: object, b: object) -> bool:
    if a.__class__ is b.__class__ and a.__class__ is not bytes:
        return a == b
    first, second = ip_key(a), ip_key(b)
    if first is None or second is None:
        raise EvaluationError(f"cannot compare '{a!r}' and '{b!r}' as IP addresses")
    return first == second


def email_equal(a: str, b: str) -> bool:
    result = names.emails_equal(a, b)
    if isinstance(result, str):
        raise EvaluationError(f"cannot compare e-mail addresses: {result}")
    return result


def uri_equal(a: str, b: str) -> bool:
    result = names.uris_equal(a, b)
    if isinstance(result, str):
        raise EvaluationError(f"cannot compare URIs: {result}")
    return result


def glob_match(text: str, pattern: str) -> bool:
    """Mixer's ``match``: "abc*" is a prefix, "*abc" a suffix, anything else must be equal."""
    if pattern.endswith("*"):
        return text.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return text.endswith(pattern[1:])
    return text == pattern


# RE2 (Go) spells a few things differently from Python's re; translate the common ones.
_RE2_SPELLINGS = {
    r"\z": r"\Z",
    "[:alpha:]": "a-zA-Z", "[:digit:]": "0-9", "[:alnum:]": "a-zA-Z0-9", "[:upper:]": "A-Z",
    "[:lower:]": "a-z", "[:space:]": r"\t\n\v\f\r ", "[:xdigit:]": "0-9A-Fa-f",
    "[:word:]": "0-9A-Za-z_", "[:punct:]": r"!-/:-@\[-`{-~",
}  # fmt: skip


def compile_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` as Python's re reads it; raises re.error when it is not a valid pattern."""
    for go, python in _RE2_SPELLINGS.items():
        if go in pattern:
            pattern = pattern.replace(go, python)
    return re.compile(pattern)


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def regex_matches(pattern: str, text: str) -> bool:
    """``pattern.matches(text)`` for a pattern known only at evaluation: an unanchored search."""
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        try:
            compiled = compile_regex(pattern)
        except re.error as exc:
            raise EvaluationError(f"matches(): '{pattern}' is not a valid regular expression: {exc}") from None
        if len(_REGEX_CACHE) > 256:
            _REGEX_CACHE.clear()
        _REGEX_CACHE[pattern] = compiled
    return compiled.search(text) is not None


def utf8_size(text: str) -> int:
    """Mixer's ``size``: the length in UTF-8 bytes."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def int_overflow() -> EvaluationError:
    return EvaluationError("integer overflow in '+': the result does not fit in INT64")


def unexpected(text: str) -> Callable[[BaseException], EvaluationError]:
    """Wraps an error no check anticipated (e.g. a non-string inside a string map)."""

    def wrap(exc: BaseException) -> EvaluationError:
        return EvaluationError(f"cannot evaluate '{text}': {type(exc).__name__}: {exc}")

    return wrap


def base_namespace() -> dict[str, Any]:
    """The globals every generated function starts from (constants are added per expression)."""
    namespace: dict[str, Any] = {
        "__builtins__": {},
        "MISSING": MISSING,
        "_EvaluationError": EvaluationError,
        "_Exception": Exception,
        "_lookup_failed": lookup_failed,
        "_overflow": int_overflow,
        "_ip": to_ip, "_timestamp": to_timestamp, "_dns": to_dns_name,
        "_email": to_email, "_uri": to_uri,
        "_ip_eq": ip_equal, "_dns_eq": names.dns_names_equal,
        "_email_eq": email_equal, "_uri_eq": uri_equal,
        "_glob": glob_match, "_matches": regex_matches, "_size": utf8_size,
    }  # fmt: skip
    for value_type, cls in FAST_CLASSES.items():
        namespace[fast_class_name(value_type)] = cls
        namespace[coercer_name(value_type)] = COERCERS[value_type]
    return namespace


def fast_class_name(value_type: ValueType) -> str:
    return "_cls_" + value_type.value


def coercer_name(value_type: ValueType) -> str:
    return "_as_" + value_type.value
