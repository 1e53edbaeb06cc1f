"""Recorded lines → raw attribute objects, checked fast; raw objects → typed values.

Every line is checked as :func:`mixerhub.decisions.read_decisions` checks it (JSON, a
recorded-decision object, each attribute value in the JSON form of its type), but
without building typed values: only the lines the replay evaluates are typed.

Most lines name the same attributes with values of the same JSON kinds, so the check is
planned once per *signature* (names and JSON kinds in order): a plan lists the few values
that need more than their kind checked — maps (string values), times, addresses,
durations, bytes, integers (range). Texts that parse (addresses …) are remembered.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from mixerhub.attributes.types import TEXT_TYPES, Manifest, ValueType
from mixerhub.decisions import SCHEMA_VERSION
from mixerhub.errors import AttributeJSONError
from mixerhub.jsonform import values_from_json

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_GOOD_TEXTS_MAX = 100_000
_PLANS_MAX = 10_000
# The shape of RFC 3339 text that mixerhub.expr.values.parse_rfc3339 reads.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})\Z")
# Types whose typed value is not the JSON value itself.
_CONVERTED = frozenset({ValueType.TIMESTAMP, ValueType.DURATION, ValueType.IP_ADDRESS,
                        ValueType.BYTES, ValueType.DOUBLE})


class BrokenLine(Exception):
    """A line that is not a readable recorded decision; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """What to check beyond the JSON kinds, for one signature; (manifest index, name)."""

    maps: tuple[tuple[int, str], ...] = ()
    times: tuple[tuple[int, str], ...] = ()
    parsed: tuple[tuple[int, str], ...] = ()
    ints: tuple[tuple[int, str], ...] = ()


class LineChecker:
    """Reads one recorded line: its attributes (JSON values as parsed) and the status code
    the hub recorded. Raises :class:`BrokenLine`."""

    def __init__(self, manifests: Sequence[Manifest]) -> None:
        self._manifests = [m for i, m in enumerate(manifests) if m not in manifests[:i]]
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self._good: set[tuple[int, str, str]] = set()

    def read(self, raw: bytes | str) -> tuple[dict[str, Any], int]:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BrokenLine(f"not JSON: {exc.msg} (column {exc.colno})") from None
        attrs, code = _envelope(obj)
        signature = (*attrs, *map(type, attrs.values()))
        plan = self._plans.get(signature)
        if plan is None:
            plan = self._plan(attrs, signature)
        if plan.maps or plan.times or plan.parsed or plan.ints:
            self._follow(plan, attrs)
        return attrs, code

    def _follow(self, plan: _Plan, attrs: dict[str, Any]) -> None:
        for index, name in plan.maps:
            try:
                "".join(attrs[name].values())  # TypeError unless every value is text
            except TypeError:
                self._slow(index, name, attrs[name])
        for index, name in plan.times:
            if not _time_ok(attrs[name]):
                self._slow(index, name, attrs[name])
        for index, name in plan.parsed:
            if (index, name, attrs[name]) not in self._good:
                self._slow(index, name, attrs[name])
        for index, name in plan.ints:
            if not _INT64_MIN <= attrs[name] <= _INT64_MAX:
                self._slow(index, name, attrs[name])

    def _plan(self, attrs: dict[str, Any], signature: tuple[Any, ...]) -> _Plan:
        """Check the kinds of this line's values (raising on a wrong one) and plan the
        rest for every line of the same signature."""
        found: dict[str, list[tuple[int, str]]] = {"maps": [], "times": [], "parsed": [],
                                                    "ints": []}
        for index, manifest in enumerate(self._manifests):
            for name, value in attrs.items():
                need = _need(manifest.get(name), value.__class__)
                if need is None:
                    self._slow(index, name, value)  # raises: the kind is wrong
                elif need:
                    found[need].append((index, name))
        plan = _Plan(**{k: tuple(v) for k, v in found.items()})
        if len(self._plans) >= _PLANS_MAX:
            self._plans.clear()
        self._plans[signature] = plan
        return plan

    def _slow(self, index: int, name: str, value: Any) -> None:
        """The full JSON-form check (the same code and message as reading a decision)."""
        try:
            values_from_json({name: value}, self._manifests[index])
        except AttributeJSONError as exc:
            raise BrokenLine(str(exc)) from None
        if value.__class__ is str:
            if len(self._good) >= _GOOD_TEXTS_MAX:
                self._good.clear()
            self._good.add((index, name, value))


def _need(declared: ValueType | None, cls: type) -> str | None:
    """For a declared type (None: undeclared) and a JSON kind: "" when the kind is enough,
    the plan list that checks more, or None when the kind is wrong (or unusual: the full
    check then decides and words the error)."""
    if cls is str:
        if declared is None or declared in TEXT_TYPES:
            return ""
        return "times" if declared is ValueType.TIMESTAMP else "parsed"
    if cls is dict:
        return "maps" if declared in (None, ValueType.STRING_MAP) else None
    if cls is int:
        return "ints" if declared in (None, ValueType.INT64, ValueType.DOUBLE) else None
    if cls is bool:
        return "" if declared in (None, ValueType.BOOL) else None
    if cls is float:
        return "" if declared in (None, ValueType.DOUBLE) else None
    return None


def _time_ok(text: str) -> bool:
    """An RFC 3339 time, checked without building it: the shape the hub's reader wants,
    and a date and time that exist."""
    if _RFC3339.match(text) is None:
        return False
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _envelope(obj: Any) -> tuple[dict[str, Any], int]:
    if obj.__class__ is not dict:
        raise BrokenLine("a recorded decision must be a JSON object")
    if obj.get("schema_version") != SCHEMA_VERSION:
        raise BrokenLine(f"unknown schema_version {obj.get('schema_version')!r}")
    attrs = _field(obj, "attributes")
    if attrs.__class__ is not dict:
        raise BrokenLine(f"attributes must be a JSON object, got {_kind(attrs)}")
    try:
        code = obj["verdict"]["status"]["code"]
    except (KeyError, TypeError):
        raise BrokenLine("missing field 'verdict.status.code'") from None
    if code.__class__ is not int:
        raise BrokenLine(f"verdict.status.code must be an integer, got {_kind(code)}")
    return attrs, code


def _field(obj: Mapping[str, Any], name: str) -> Any:
    try:
        return obj[name]
    except KeyError:
        raise BrokenLine(f"missing field {name!r}") from None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null" if value is None else ("array" if isinstance(value, list) else "object")


class Typer:
    """Typed values of a checked line, as :func:`values_from_json` makes them: texts,
    integers, booleans and maps are their JSON values; times, durations, addresses, bytes
    and doubles are converted (repeating texts once)."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self._converted = frozenset(n for n, t in manifest.items() if t in _CONVERTED)
        self._times = frozenset(n for n, t in manifest.items() if t is ValueType.TIMESTAMP)
        self._cache: dict[tuple[str, Any], Any] = {}

    def __call__(self, attrs: dict[str, Any]) -> dict[str, Any]:
        values = dict(attrs)
        for name in self._converted & attrs.keys():
            values[name] = self._convert(name, attrs[name])
        return values

    def _convert(self, name: str, raw: Any) -> Any:
        if name in self._times:  # nearly every time is new: not worth remembering
            return values_from_json({name: raw}, self.manifest)[name]
        key = (name, raw)
        value = self._cache.get(key)
        if value is None:
            value = values_from_json({name: raw}, self.manifest)[name]
            if len(self._cache) >= _GOOD_TEXTS_MAX:
                self._cache.clear()
            self._cache[key] = value
        return value
