"""Kafka records: the JSON value of each (``docs/kafka-records.md``) and the pending form
the buffer, the spool and the sender pass around."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from mixerhub.attributes.bag import AttributeBag
from mixerhub.expr import CompiledExpression
from mixerhub.jsonform import format_duration, format_timestamp, to_json
from mixerhub.redact import REDACTED
from mixerhub.templates.instance import Instance

try:  # the record's JSON written in C (_render.c); optional, the same bytes in Python
    from mixerhub.adapters.kafka import _render
except ImportError:  # pragma: no cover - built by setup.py wherever a compiler is
    _render = None  # type: ignore[assignment]  # the module, or None when it is not built

#: The ``schema_version`` of every record this code writes (docs/schemas/).
SCHEMA_VERSION = 1
_IPV4, _IPV6 = ipaddress.IPv4Address, ipaddress.IPv6Address
# Values a record map passes on unchanged (RecordRenderer._default formats the last five).
_LEAVES = frozenset({str, int, bool, dt.datetime, dt.timedelta, _IPV4, _IPV6, bytes})
_AS_IS: Any = object()  # RecordRenderer plans: nothing to change
_GENERAL: Any = object()  # keys that are not text: JsonRedacted's walk
# What the C renderer writes before a record's id (schema_version comes first).
_HEAD = b'{"schema_version":%d,"id":' % SCHEMA_VERSION


class OutRecord:
    """One record on its way: key text (or None), the JSON value, the time in ms."""

    __slots__ = ("key", "size", "timestamp_ms", "value")

    def __init__(self, key: str | None, value: bytes, timestamp_ms: int) -> None:
        self.key = key
        self.value = value
        self.timestamp_ms = timestamp_ms
        self.size = len(value) + (len(key) if key else 0)  # what the buffer limit counts

    def key_bytes(self) -> bytes | None:
        return None if self.key is None else self.key.encode("utf-8")


class Bound:
    """An instance with what only the attribute bag knows: the record key, the reporter and
    when the report arrived (made by ``KafkaAdapter.bind`` on the report path)."""

    __slots__ = ("instance", "key", "received", "reporter")

    def __init__(self, instance: Instance, key: str | None, reporter: dict[str, str] | None,
                 received: dt.datetime) -> None:
        self.instance = instance
        self.key = key
        self.reporter = reporter
        self.received = received


def key_text(expression: CompiledExpression | None, bag: AttributeBag) -> str | None:
    """The key expression's value as text, or None (no key, or it cannot be evaluated:
    a missing attribute without ``|``)."""
    if expression is None:
        return None
    try:
        value = expression(bag)
    except Exception:  # noqa: BLE001 - an evaluation error means "no key", by design
        return None
    if type(value) is str:
        return value
    text = to_json(value)
    return text if isinstance(text, str) else json.dumps(text)


def reporter_of(values: dict[str, Any]) -> dict[str, str] | None:
    """``context.reporter.kind`` and ``.uid`` as ``{"kind", "uid"}``, or None if neither."""
    kind, uid = values.get("context.reporter.kind"), values.get("context.reporter.uid")
    if kind is None and uid is None:
        return None  # the common case, answered without building anything
    found = {name: v for name, v in (("kind", kind), ("uid", uid)) if isinstance(v, str)}
    return found or None


class RecordRenderer:
    """Turns one bound instance into its OutRecord (fields in the JSON form, redacted).

    The report path's hot spot. The record's JSON is written in C (``_render.c``): the
    envelope, then the fields, secrets redacted at every depth, with ``_default`` asked
    only for addresses and the rarer types. What the C code does not take (keys that are
    not text, non-finite doubles, nested instances …) takes the Python path: a walk over
    the instance's maps that only copies what must change, planned once per (keys, value
    types), then one ``orjson.dumps``. Both write the same bytes (tests/adapters/kafka/
    test_kafka_render.py); the C path measured about 5x faster on access-log records."""

    def __init__(self, handler: str, secret_keys: Iterable[str], ids: Callable[[], str]
                 ) -> None:
        self._handler = handler
        self._keys = frozenset(k.lower() for k in secret_keys)
        self._plans: dict[tuple[Any, ...], Any] = {}
        self._ids = ids
        self._last: tuple[dt.datetime | None, str] = (None, "")
        self._millis: tuple[dt.datetime | None, int] = (None, 0)
        self._addresses: dict[int, tuple[Any, str]] = {}
        self._fallback = JsonRedacted(secret_keys)
        self._lowered: dict[str, bool] = {}  # key → secret?, for the C renderer
        self._middles: dict[tuple[str, str], bytes] = {}
        self.native = _render is not None  # tests turn it off to compare both paths

    def __call__(self, bound: Bound) -> OutRecord:
        instance = bound.instance
        stamp = instance.get("timestamp")
        when = stamp if isinstance(stamp, dt.datetime) else bound.received
        last, when_text = self._last
        if when is not last:
            when_text = format_timestamp(when)
            self._last = (when, when_text)
        millis = self._millis
        if millis[0] is not when:  # a batch's records often share one time object
            millis = self._millis = (when, _millis(when))
        ids = self._ids()
        value = None
        if self.native:
            middle = self._middles.get((instance.template, instance.name))
            if middle is None:
                middle = self._middle(instance.template, instance.name)
            value = _render.render(_HEAD, ids, middle, when, when_text, bound.reporter,
                                   instance._fields, self._keys, self._lowered,
                                   self._default, REDACTED)
        if value is None:
            value = self._python(bound, ids, when)
        return OutRecord(bound.key, value, millis[1])

    def _middle(self, template: str, name: str) -> bytes:
        """The record's bytes between its id and its time's text."""
        middle = b"," + orjson.dumps({"template": template, "instance": name,
                                      "handler": self._handler})[1:-1] + b',"timestamp":'
        if len(self._middles) >= 1024:
            self._middles.clear()
        self._middles[(template, name)] = middle
        return middle

    def _python(self, bound: Bound, ids: str, when: dt.datetime) -> bytes:
        """The record's JSON by the Python path (what the C one writes, and the rest)."""
        instance = bound.instance
        record = {
            "schema_version": SCHEMA_VERSION, "id": ids,
            "template": instance.template, "instance": instance.name,
            "handler": self._handler, "timestamp": when,
            "reporter": bound.reporter,
            "fields": self.mapping(instance._fields, drop_none=True),  # read, never changed
        }
        return orjson.dumps(record, default=self._default,
                            option=orjson.OPT_PASSTHROUGH_DATETIME)

    def mapping(self, value: Mapping[Any, Any], drop_none: bool = False) -> Any:
        """``value`` ready for orjson: the same dict when nothing in it must change.

        What must change depends only on the keys and the types of the values, which
        repeat from record to record (an instance's fields are typed by its config): so
        the work is planned once per (keys, types) and then only the planned keys are
        touched. Building that plan key is C-speed work, about 0.3 µs for 12 fields."""
        plan_key = (tuple(value), tuple(map(type, value.values())), drop_none)
        plan = self._plans.get(plan_key)
        if plan is None:
            plan = self._plan(*plan_key)
        if plan is _AS_IS:
            return value
        if plan is _GENERAL:  # keys that are not text
            return self._fallback.mapping(value, drop_none)
        hidden, walk, drop = plan
        out = dict(value)
        for key in walk:
            out[key] = self._value(value[key])
        for key in hidden:
            out[key] = REDACTED
        for key in drop:
            del out[key]
        return out

    def _plan(self, keys: tuple[Any, ...], kinds: tuple[type, ...], drop_none: bool) -> Any:
        if any(type(k) is not str for k in keys):
            plan: Any = _GENERAL
        else:
            hidden, walk, drop = [], [], []
            for key, kind in zip(keys, kinds, strict=True):
                if kind is type(None) and drop_none:
                    drop.append(key)
                elif key.lower() in self._keys:
                    hidden.append(key)
                elif kind not in _LEAVES and kind is not type(None):
                    walk.append(key)  # maps, lists, doubles, nested instances, the rest
            plan = (tuple(hidden), tuple(walk), tuple(drop)) if hidden or walk or drop \
                else _AS_IS
        if len(self._plans) >= 4096:
            self._plans.clear()
        self._plans[(keys, kinds, drop_none)] = plan
        return plan

    def _value(self, item: Any) -> Any:
        kind = type(item)
        if kind is dict or (kind is not Instance and isinstance(item, Mapping)):
            return self.mapping(item)
        if kind is Instance:
            return self.mapping(item.as_dict())
        if kind is float:  # Python's shortest text, as the C renderer writes it
            return orjson.Fragment(repr(item)) if math.isfinite(item) else to_json(item)
        if kind is list or kind is tuple:
            return [self._value(v) for v in item]
        return item

    def _default(self, value: Any) -> Any:
        kind = type(value)
        if kind is dt.datetime:
            last, text = self._last
            if value is not last:
                text = format_timestamp(value)
                self._last = (value, text)
            return text
        if kind is dt.timedelta:
            return format_duration(value)
        if kind is _IPV4 or kind is _IPV6:
            # The decoder hands out one object per address, so identity finds the text
            # (the entry keeps its object, so an id is never reused while cached).
            known = self._addresses.get(id(value))
            if known is not None and known[0] is value:
                return known[1]
            if len(self._addresses) >= 1024:
                self._addresses.clear()
            text = str(value)
            self._addresses[id(value)] = (value, text)
            return text
        return self._fallback(value)


class JsonRedacted:
    """``Redactor(keys)(to_json(value))`` in one pass, for the report path (measured
    about 4x faster on access-log instances): plain values are returned as they are,
    and the last time formatted is remembered (a record's time is usually a field too)."""

    def __init__(self, secret_keys: Iterable[str]) -> None:
        self._keys = frozenset(k.lower() for k in secret_keys)
        self._last: tuple[dt.datetime | None, str] = (None, "")

    def __call__(self, value: Any) -> Any:
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            return value
        if kind is dict or isinstance(value, Mapping):
            return self.mapping(value)
        if kind is dt.datetime:
            return self.time(value)
        if kind is _IPV4 or kind is _IPV6:
            return str(value)
        if kind is dt.timedelta:
            return format_duration(value)
        if kind is list or kind is tuple:
            return [self(v) for v in value]
        if isinstance(value, Instance):
            return self(value.as_dict())
        return to_json(value)

    def mapping(self, value: Mapping[Any, Any], drop_none: bool = False) -> dict[str, Any]:
        """A mapping's JSON form, redacted; ``drop_none`` leaves out keys without a value."""
        keys, out = self._keys, {}
        for key, item in value.items():
            if item is None and drop_none:
                continue
            if type(key) is not str:
                key = str(key)
            kind = type(item)
            if key.lower() in keys:
                out[key] = REDACTED
            elif kind is str or kind is int or kind is bool or item is None:
                out[key] = item  # most values: no call at all
            else:
                out[key] = self(item)
        return out

    def time(self, value: dt.datetime) -> str:
        last, text = self._last
        if value is not last:
            text = format_timestamp(value)
            self._last = (value, text)
        return text


def _millis(when: dt.datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1000)
