"""The attribute bag: typed values plus a record of every lookup.

Values are plain Python objects: ``str`` (STRING, EMAIL_ADDRESS, URI, DNS_NAME), ``int``,
``float``, ``bool``, ``bytes``, ``datetime`` (UTC-aware, TIMESTAMP), ``timedelta``
(DURATION), ``IPv4Address``/``IPv6Address`` (IP_ADDRESS) and ``dict[str, str]``
(STRING_MAP).

Every lookup is recorded in ``refs``: the key is the attribute name, or ``(name, map_key)``
for a string-map key; the value is True when found (EXACT) and False when missing
(ABSENCE). A later lookup of the same key overwrites the flag. A string map fetched only to
read keys is recorded as KEYED (truthy): what was decided depends on those keys, not on the
whole map, so the wire and the caches carry the keys alone — a per-request header such as
``x-request-id`` must not defeat every cache. A whole-map use records True and wins. The union of these is what
a verdict depends on (``ReferencedAttributes``) and what the decision caches key on.
Compiled expressions read ``values`` and write ``refs`` directly, for speed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: Returned by lookups of absent attributes and map keys.
MISSING: Final = _Missing()

RefKey = str | tuple[str, str]

#: ``refs`` value of a map fetched only to look up keys (see the module doc).
KEYED: Final = 2


class Reference(NamedTuple):
    """One recorded lookup."""

    name: str
    map_key: str | None
    present: bool

    def notation(self) -> str:
        """The conformance-table form: ``a``, ``-a``, ``m[k]``, ``-m[k]``."""
        text = self.name if self.map_key is None else f"{self.name}[{self.map_key}]"
        return text if self.present else "-" + text


class AttributeBag:
    """Attribute values with lookup tracking. Cheap to create; one per request."""

    __slots__ = ("values", "refs")

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self.values: dict[str, Any] = dict(values) if values else {}
        self.refs: dict[RefKey, bool | int] = {}  # True, False or KEYED

    @classmethod
    def adopt(cls, values: dict[str, Any]) -> AttributeBag:
        """A bag over ``values`` itself, not a copy: for a dict nobody else keeps (one
        just decoded from the wire)."""
        bag = cls.__new__(cls)
        bag.values = values
        bag.refs = {}
        return bag

    def get(self, name: str) -> Any:
        """The value of ``name``, or MISSING; the lookup is recorded."""
        value = self.values.get(name, MISSING)
        self.refs[name] = value is not MISSING
        return value

    def get_map_key(self, name: str, key: str) -> Any:
        """``name[key]`` of a string map, or MISSING; records the map and the key."""
        mapping = self.values.get(name, MISSING)
        if mapping is MISSING:
            self.refs[name] = False
            return MISSING
        self.refs.setdefault(name, KEYED)
        value = mapping.get(key, MISSING)
        self.refs[(name, key)] = value is not MISSING
        return value

    def names(self) -> Iterable[str]:
        return self.values.keys()

    def references(self, keyed: bool = False) -> list[Reference]:
        """The recorded lookups, in the order first made; maps read only by key are left
        out unless ``keyed`` (the conformance notation lists them)."""
        out = []
        for key, present in self.refs.items():
            if present is KEYED and not keyed:
                continue
            if isinstance(key, tuple):
                out.append(Reference(key[0], key[1], bool(present)))
            else:
                out.append(Reference(key, None, bool(present)))
        return out

    def reset_references(self) -> None:
        self.refs.clear()

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"AttributeBag({self.values!r})"
