"""The values a rule built for an adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast


class Instance:
    """Template fields by attribute (``instance.value``, ``instance.dimensions``); nested
    structs are Instances too. ``name`` is the instance's full name, ``template`` its
    template's name. Immutable and hashable (identical instances share one adapter call)."""

    __slots__ = ("name", "template", "_fields", "_key")

    def __init__(self, name: str, template: str, fields: Mapping[str, Any]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "template", template)
        object.__setattr__(self, "_fields", dict(fields))
        object.__setattr__(self, "_key", None)

    @classmethod
    def adopt(cls, name: str, template: str, fields: dict[str, Any]) -> Instance:
        """An Instance over ``fields`` itself, not a copy: for a dict just built that
        nobody else keeps (the compiled builders' own)."""
        instance = cls.__new__(cls)
        _SET_NAME(instance, name)
        _SET_TEMPLATE(instance, template)
        _SET_FIELDS(instance, fields)
        _SET_KEY(instance, None)
        return instance

    def __getattr__(self, field: str) -> Any:
        try:
            return self._fields[field]
        except KeyError:
            raise AttributeError(f"{self.template} instance has no field {field!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("instances are immutable")

    def get(self, field: str, default: Any = None) -> Any:
        return self._fields.get(field, default)

    def fields(self) -> dict[str, Any]:
        """The field values (nested Instances stay Instances)."""
        return dict(self._fields)

    def as_dict(self) -> dict[str, Any]:
        """Plain data: nested structs as dicts (for logs, Kafka, OPA input)."""
        return {k: v.as_dict() if isinstance(v, Instance) else v for k, v in self._fields.items()}

    def key(self) -> tuple[Any, ...]:
        if self._key is None:
            object.__setattr__(self, "_key", (self.name, _freeze(self._fields)))
        return cast("tuple[Any, ...]", self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Instance) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return f"Instance({self.name!r}, {self.template!r}, {self._fields!r})"


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, Instance):
        return value.key()
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


# The slots' own setters: Instance.__setattr__ refuses every write after construction.
_SET_NAME = Instance.name.__set__  # type: ignore[attr-defined]
_SET_TEMPLATE = Instance.template.__set__  # type: ignore[attr-defined]
_SET_FIELDS = Instance._fields.__set__  # type: ignore[attr-defined]
_SET_KEY = Instance._key.__set__  # type: ignore[attr-defined]
