"""Replay results remembered by exactly the attribute values they read.

The decision cache's idea (docs/policy-engine.md), on the raw JSON values of recorded
lines: evaluation is deterministic in the attributes it reads, so two lines that agree on
every attribute (and map key) both configs read get the same pair of verdicts. A *shape*
is a set of references; its key function picks a line's raw values for them. Equal raw
values type to equal values, so a key match is always a correct answer (texts that type
alike but read differently, such as two spellings of one time, only cost a miss).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

#: One reference: an attribute name, and the key when a string map was read by key.
Ref = tuple[str, str | None]
KeyFn = Callable[[dict[str, Any]], tuple[Any, ...]]
E = TypeVar("E")

_REORDER_EVERY = 1 << 16


class _NoMap:
    """The key value of ``m[k]`` when ``m`` is absent (unlike present without ``k``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_MAP"


NO_MAP = _NoMap()


def _tag(value: Any) -> Any:
    """A hashable key part for a non-text JSON value; the type is part of it, so ``1``,
    ``1.0`` and ``true`` of an undeclared attribute stay apart."""
    if value is None:
        return None
    if value.__class__ is dict:
        return (dict, frozenset(value.items()))
    return (value.__class__, value)


def compile_key(refs: Iterable[Ref]) -> KeyFn:
    """A function of a raw attribute object giving its values for ``refs`` (absent: None;
    JSON null never gets this far, the line checker refuses it)."""
    parts = []
    for name, key in refs:
        if key is None:
            parts.append(f"(v if (v := g({name!r})).__class__ is str else _tag(v))")
        else:
            parts.append(f"(m.get({key!r}) if (m := g({name!r})).__class__ is dict "
                         "else NO_MAP)")
    source = "def key(a):\n    g = a.get\n    return (" + "".join(p + ", " for p in parts) + ")\n"
    namespace: dict[str, Any] = {"_tag": _tag, "NO_MAP": NO_MAP}
    exec(compile(source, "<mixerhub.diff key>", "exec"), namespace)  # noqa: S102 - our own text
    fn: KeyFn = namespace["key"]
    return fn


class Shape(Generic[E]):
    __slots__ = ("refs", "key", "entries", "hits")

    def __init__(self, refs: tuple[Ref, ...]) -> None:
        self.refs = refs
        self.key = compile_key(refs)
        self.entries: dict[tuple[Any, ...], E] = {}
        self.hits = 0


class Memo(Generic[E]):
    """Shapes in order of use; an entry per shape and key. Bounded: past ``max_entries``
    entries or ``max_shapes`` shapes, :meth:`store` refuses (the caller counts such
    results without remembering them)."""

    def __init__(self, max_entries: int = 2_000_000, max_shapes: int = 256) -> None:
        self.max_entries = max_entries
        self.max_shapes = max_shapes
        self._shapes: list[Shape[E]] = []
        self._by_refs: dict[tuple[Ref, ...], Shape[E]] = {}
        self._size = 0
        self._lookups = 0

    def __len__(self) -> int:
        return self._size

    @property
    def shapes(self) -> int:
        return len(self._shapes)

    def lookup(self, attrs: dict[str, Any]) -> E | None:
        self._lookups += 1
        if self._lookups & (_REORDER_EVERY - 1) == 0:
            self._shapes.sort(key=lambda s: -s.hits)
        for shape in self._shapes:
            entry = shape.entries.get(shape.key(attrs))
            if entry is not None:
                shape.hits += 1
                return entry
        return None

    def store(self, refs: Iterable[Ref], attrs: dict[str, Any], entry: E) -> bool:
        """Remember ``entry`` for lines agreeing with ``attrs`` on ``refs``."""
        if self._size >= self.max_entries:
            return False
        ordered = tuple(sorted(set(refs), key=lambda r: (r[0], r[1] or "")))
        shape = self._by_refs.get(ordered)
        if shape is None:
            if len(self._shapes) >= self.max_shapes:
                return False
            shape = self._by_refs[ordered] = Shape(ordered)
            self._shapes.append(shape)
        shape.entries[shape.key(attrs)] = entry
        self._size += 1
        return True
