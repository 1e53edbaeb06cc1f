"""The replay loop: each recorded line through both configs, remembered by what they read.

Per line on the fast path: one JSON parse, the line check, one memo lookup, one count.
Only a line whose referenced values were not seen before goes further: each config whose
own memo has not seen its values types the bag and evaluates it; the two verdicts,
compared once, are shared by every later line that agrees on the attributes (and map
keys) either config read. What the loop found is a :class:`Tally`, which merges (parallel
runs) and becomes the report.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from mixerhub.diff.compare import Pair, Pairs
from mixerhub.diff.lines import BrokenLine, LineChecker, Typer
from mixerhub.diff.memo import Memo, Ref
from mixerhub.diff.replay import ReplaySide, Side
from mixerhub.diff.sources import Batch, Where
from mixerhub.errors import AttributeJSONError

#: Broken lines listed in the report (all are counted).
KEEP_BROKEN = 1_000
#: Remembered groups, per memo (past it, results are counted without being remembered).
MEMO_ENTRIES = 2_000_000
#: Changed groups that keep their first line's attributes, for examples.
KEEP_EXAMPLES = 10_000
#: Changed groups that are listed on their own when the memo cannot hold them.
KEEP_LOOSE = 10_000


@dataclasses.dataclass(slots=True)
class Entry:
    """A group of checks that agree on every referenced value (so get the same pair)."""

    pair: Pair
    base_code: int  # -1 when the base config could not replay it
    count: int = 0
    pattern: tuple[tuple[Ref, Any], ...] = ()  # changed groups: the referenced raw values
    where: Where | None = None  # changed groups: the first line
    attrs: dict[str, Any] | None = None  # changed groups, while KEEP_EXAMPLES allows


@dataclasses.dataclass(frozen=True, slots=True)
class Broken:
    where: Where
    reason: str


@dataclasses.dataclass
class Tally:
    """What a replay found (picklable: parallel workers send theirs to be merged)."""

    entries: list[Entry] = dataclasses.field(default_factory=list)
    loose: collections.Counter[Pair] = dataclasses.field(default_factory=collections.Counter)
    recorded_differs: collections.Counter[tuple[int, int]] = dataclasses.field(
        default_factory=collections.Counter)  # (recorded code, base code) → checks
    broken: list[Broken] = dataclasses.field(default_factory=list)
    broken_count: int = 0
    evaluations: int = 0  # engine evaluations, both configs together
    groups: int = 0  # distinct referenced-value groups
    #: lines fed per (source, start byte), for numbering the lines of parallel parts
    segments: collections.Counter[tuple[str, int]] = dataclasses.field(
        default_factory=collections.Counter)

    def counts(self) -> collections.Counter[Pair]:
        """Checks per pair of answers."""
        total = collections.Counter(self.loose)
        for entry in self.entries:
            total[entry.pair] += entry.count
        return total

    def merge(self, other: Tally) -> None:
        self.entries += other.entries
        self.loose.update(other.loose)
        self.recorded_differs.update(other.recorded_differs)
        self.broken += other.broken[:max(KEEP_BROKEN - len(self.broken), 0)]
        self.broken_count += other.broken_count
        self.evaluations += other.evaluations
        self.groups += other.groups
        self.segments.update(other.segments)

    def lines_before(self) -> dict[tuple[str, int], int]:
        """For each part of a file, the lines of the parts of that file before it."""
        out, seen = {}, collections.Counter[str]()
        for source, start in sorted(self.segments):
            out[(source, start)] = seen[source]
            seen[source] += self.segments[(source, start)]
        return out


class Replayer:
    def __init__(self, base: ReplaySide, candidate: ReplaySide, *, memo: bool = True) -> None:
        self.checker = LineChecker([base.config.manifest, candidate.config.manifest])
        limit = MEMO_ENTRIES if memo else 0
        typer = Typer(base.config.manifest)
        self.base = _Decider(base, limit, typer)
        self.candidate = _Decider(candidate, limit, typer if base.config.manifest ==
                                  candidate.config.manifest else None)
        self.memo: Memo[Entry] = Memo(max_entries=limit)
        self.pairs = Pairs()
        self.found = Tally()
        self._examples = 0
        self._loose_listed = 0

    async def feed(self, batch: Batch) -> None:
        """Replay one batch of lines (the hot loop)."""
        read, lookup, differs = self.checker.read, self.memo.lookup, self.found.recorded_differs
        for index, raw in enumerate(batch.lines):
            try:
                attrs, recorded = read(raw)
            except BrokenLine as exc:
                self._broken(batch, index, raw, str(exc))
                continue
            entry = lookup(attrs)
            if entry is None:
                entry = await self._evaluate(attrs, batch, index)
                if entry is None:
                    continue
            entry.count += 1
            if recorded != entry.base_code and entry.base_code >= 0:
                differs[(recorded, entry.base_code)] += 1
        self.found.segments[(batch.source, batch.start)] += len(batch.lines)

    def tally(self) -> Tally:
        self.found.evaluations = self.base.evaluations + self.candidate.evaluations
        self.found.groups = len(self.memo)
        return self.found

    def _broken(self, batch: Batch, index: int, raw: bytes, reason: str) -> None:
        if not raw.strip():  # empty lines are skipped, as read_decisions does
            return
        self.found.broken_count += 1
        if len(self.found.broken) < KEEP_BROKEN:
            self.found.broken.append(Broken(batch.where(index), reason))

    async def _evaluate(self, attrs: dict[str, Any], batch: Batch, index: int) -> Entry | None:
        typed = _Typed(attrs)
        try:
            base, base_refs = await self.base.decide(attrs, typed)
            cand, cand_refs = await self.candidate.decide(attrs, typed)
        except AttributeJSONError as exc:
            self._broken(batch, index, b"x", str(exc))
            return None
        pair = self.pairs.get(base, cand)
        entry = Entry(pair, base.code if base.replayed else -1)
        refs = base_refs | cand_refs
        if pair.change is not None:
            self._describe(entry, refs, attrs, batch.where(index))
        if self.memo.store(refs, attrs, entry):
            self.found.entries.append(entry)
        elif pair.change is not None and self._loose_listed < KEEP_LOOSE:
            self._loose_listed += 1
            self.found.entries.append(entry)
        else:  # counted by pair only; the caller's count goes to a throwaway entry
            self.found.loose[pair] += 1
        return entry

    def _describe(self, entry: Entry, refs: frozenset[Ref], attrs: dict[str, Any],
                  where: Where) -> None:
        entry.pattern = tuple(sorted(((r, _value(attrs, r)) for r in refs),
                                     key=lambda item: (item[0][0], item[0][1] or "")))
        entry.where = where
        if self._examples < KEEP_EXAMPLES:
            self._examples += 1
            entry.attrs = attrs


class MapValue(tuple[tuple[str, str], ...]):
    """A string map read whole, kept hashable in a pattern (its sorted items)."""

    __slots__ = ()


def _value(attrs: dict[str, Any], ref: Ref) -> Any:
    """A referenced raw value; None when absent."""
    name, key = ref
    value = attrs.get(name)
    if key is None:
        return MapValue(sorted(value.items())) if isinstance(value, dict) else value
    return value.get(key) if isinstance(value, dict) else None


class _Decider:
    """One config's verdicts, remembered by what that config read: a line new to the
    joint memo is evaluated only by the config(s) that have not seen its values."""

    def __init__(self, side: ReplaySide, limit: int, typer: Typer | None = None) -> None:
        self.side = side
        self.typer = typer if typer is not None else Typer(side.config.manifest)
        self.memo: Memo[tuple[Side, frozenset[Ref]]] = Memo(max_entries=limit)
        self.evaluations = 0

    async def decide(self, attrs: dict[str, Any], typed: _Typed
                     ) -> tuple[Side, frozenset[Ref]]:
        found = self.memo.lookup(attrs)
        if found is not None:
            return found
        result = await self.side.decide(typed(self.typer))  # AttributeJSONError: broken
        self.evaluations += 1
        self.memo.store(result[1], attrs, result)
        return result


class _Typed:
    """One line's typed values, made at most once per manifest (both configs usually
    share one)."""

    __slots__ = ("attrs", "_typer", "_values")

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs
        self._typer: Typer | None = None
        self._values: dict[str, Any] = {}

    def __call__(self, typer: Typer) -> dict[str, Any]:
        if typer is not self._typer:
            self._values, self._typer = typer(self.attrs), typer
        return self._values
