"""Declaring templates."""

from __future__ import annotations

import dataclasses
import enum

from mixerhub.attributes.types import ValueType

#: Field types that hold text; a STRING field accepts any of them (Istio's IP list rules
#: send ``source.ip`` to listentry's ``value``).
TEXTUAL = frozenset({ValueType.STRING, ValueType.IP_ADDRESS, ValueType.DNS_NAME,
                     ValueType.EMAIL_ADDRESS, ValueType.URI})


class Variety(enum.Enum):
    CHECK = "CHECK"
    QUOTA = "QUOTA"
    REPORT = "REPORT"


@dataclasses.dataclass(frozen=True)
class Field:
    """One field: an expression (``types`` None = any), a map of expressions, or a struct."""

    name: str
    kind: str = "expr"  # "expr" | "map" | "struct"
    types: frozenset[ValueType] | None = None
    fields: tuple[Field, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("expr", "map", "struct"):
            raise ValueError(f"field {self.name}: unknown kind {self.kind!r}")


@dataclasses.dataclass(frozen=True)
class Template:
    name: str
    variety: Variety
    fields: tuple[Field, ...] = ()
    description: str = ""

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)
