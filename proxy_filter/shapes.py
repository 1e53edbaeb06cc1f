"""Items keyed by the attributes a hub answer referenced: one hash lookup per known shape.

The hub returns, with every answer, what it read (``ReferencedAttributes``): attribute
names, string-map keys (maps read only by key are referenced by key only, see
``mixerhub.attributes.bag.KEYED``) and whether each was present. That set is a *shape*.
For a request, a shape yields a key: the request's values for those names, or None when
presence differs. Any answer stored under that key holds for the request, since the hub is
deterministic in what it reads. Lookup cost is one key per live shape (usually 1–3),
whatever the number of entries; Envoy's old Mixer client compared entries one by one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from mixerhub.attributes.bag import MISSING, Reference

T = TypeVar("T")
Shape = tuple[tuple[str, "str | None", bool], ...]
FullKey = tuple[Shape, tuple[Any, ...]]


def shape_of(references: Iterable[Reference]) -> Shape:
    """A canonical shape: each reference once, sorted."""
    unique = {(r.name, r.map_key, r.present) for r in references}
    return tuple(sorted(unique, key=lambda r: (r[0], r[1] or "", r[2])))


def key_of(shape: Shape, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The request's values for ``shape`` (absences are part of the shape), or None."""
    out = []
    for name, map_key, present in shape:
        value = values.get(name, MISSING)
        if map_key is not None and value is not MISSING:
            value = value.get(map_key, MISSING) if isinstance(value, dict) else MISSING
        if (value is not MISSING) is not present:
            return None
        if present:
            out.append(frozenset(value.items()) if isinstance(value, dict) else value)
    return tuple(out)


class ShapeIndex(Generic[T]):
    """An LRU of items under (shape, key), bounded in items and in shapes. A shape lives
    while it has items, so lookups only pay for shapes in use."""

    def __init__(self, max_items: int = 10_000, max_shapes: int = 64) -> None:
        self.max_items = max_items
        self.max_shapes = max_shapes
        self._items: OrderedDict[FullKey, T] = OrderedDict()
        self._shapes: dict[Shape, int] = {}  # shape → items held, insertion-ordered

    def __len__(self) -> int:
        return len(self._items)

    def candidates(self, values: Mapping[str, Any]) -> Iterator[tuple[FullKey, T]]:
        """Every stored item whose key matches ``values``."""
        for shape in tuple(self._shapes):
            key = key_of(shape, values)
            if key is not None:
                item = self._items.get((shape, key))
                if item is not None:
                    yield (shape, key), item

    def flight_keys(self, values: Mapping[str, Any]) -> list[Hashable]:
        """Keys under which an identical request in flight could be found: one per live
        shape, or the shape-less key while nothing is known."""
        keys: list[Hashable] = [(s, k) for s in self._shapes
                                if (k := key_of(s, values)) is not None]
        return keys or [()]

    def put(self, references: Iterable[Reference], values: Mapping[str, Any], item: T
            ) -> FullKey | None:
        """Store ``item`` under the key ``values`` give for these references."""
        shape = shape_of(references)
        key = key_of(shape, values)
        if key is None:  # cannot happen for the values the hub answered on; never mis-key
            return None
        full = (shape, key)
        if full not in self._items:
            self._admit_shape(shape)
            self._shapes[shape] += 1
        self._items[full] = item
        self._items.move_to_end(full)
        while len(self._items) > self.max_items:
            self.remove(next(iter(self._items)))
        return full

    def _admit_shape(self, shape: Shape) -> None:
        if shape in self._shapes:
            return
        while len(self._shapes) >= self.max_shapes:
            self._drop_shape(next(iter(self._shapes)))
        self._shapes[shape] = 0

    def _drop_shape(self, shape: Shape) -> None:
        for full in [f for f in self._items if f[0] == shape]:
            del self._items[full]
        del self._shapes[shape]

    def touch(self, full: FullKey) -> None:
        self._items.move_to_end(full)

    def remove(self, full: FullKey) -> None:
        if self._items.pop(full, None) is None:
            return
        shape = full[0]
        self._shapes[shape] -= 1
        if not self._shapes[shape]:
            del self._shapes[shape]

    def items(self) -> list[tuple[FullKey, T]]:
        return list(self._items.items())

    def clear(self) -> None:
        self._items.clear()
        self._shapes.clear()
