"""What a diff found, as data: counts by status transition and by rule, the most frequent
changed attribute patterns, examples, what could not be replayed, broken lines. The JSON
form (``--json``) is :meth:`DiffReport.to_json`; the terminal table is ``render.py``."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable
from typing import Any

from mixerhub.diff.compare import Change, Pair, code_name
from mixerhub.diff.memo import Ref
from mixerhub.diff.replay import Side, Subject
from mixerhub.diff.replayer import Entry, MapValue, Tally
from mixerhub.diff.sources import Where
from mixerhub.redact import DEFAULT_SECRET_KEYS, REDACTED, Redactor

#: The ``schema`` of the JSON report.
SCHEMA = "mixerhub.diff/v1"
_SECRET = frozenset(k.lower() for k in DEFAULT_SECRET_KEYS)


@dataclasses.dataclass(frozen=True)
class Transition:
    change: Change
    checks: int

    def to_json(self) -> dict[str, Any]:
        c = self.change
        return {"from": code_name(c.base_code), "to": code_name(c.candidate_code),
                "from_code": c.base_code, "to_code": c.candidate_code,
                "changed": list(c.parts), "label": c.label, "checks": self.checks}


@dataclasses.dataclass
class RuleRow:
    """A rule whose denial decides a changed check in one config and not the other
    (``now_decides``: in the candidate; ``no_longer_decides``: in the base), or that
    decides in both but differently."""

    rule: str
    now_decides: int = 0
    no_longer_decides: int = 0
    decides_differently: int = 0

    @property
    def total(self) -> int:
        return self.now_decides + self.no_longer_decides + self.decides_differently


@dataclasses.dataclass(frozen=True)
class Pattern:
    """The values of the referenced attributes that a group of changed checks share."""

    attributes: dict[str, Any]  # notation (name, name[key]) → raw value; None = absent
    change: Change
    checks: int

    def to_json(self) -> dict[str, Any]:
        return {"attributes": self.attributes, "change": self.change.label,
                "checks": self.checks}


@dataclasses.dataclass(frozen=True)
class Example:
    where: str
    change: Change
    base: Side
    candidate: Side
    attributes: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"where": self.where, "change": self.change.label,
                "base": side_json(self.base), "candidate": side_json(self.candidate),
                "attributes": self.attributes}


@dataclasses.dataclass(frozen=True)
class NotReplayed:
    config: str  # "base" or "candidate"
    handler: str
    reason: str
    checks: int


@dataclasses.dataclass
class DiffReport:
    base: list[str]
    candidate: list[str]
    traffic: list[str]
    checks: int
    replayed: int
    changed: int
    transitions: list[Transition]
    rules: list[RuleRow]
    patterns: list[Pattern]
    examples: list[Example]
    not_replayed: list[NotReplayed]
    broken: int
    broken_lines: list[tuple[str, str]]  # where, why
    recorded_agree: int
    recorded_differ: list[tuple[int, int, int]]  # recorded code, base code, checks
    groups: int  # distinct referenced-value groups evaluated
    evaluations: int
    seconds: float = 0.0

    @property
    def not_replayed_checks(self) -> int:
        return self.checks - self.replayed

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "base": self.base, "candidate": self.candidate,
            "traffic": self.traffic,
            "checks": {"read": self.checks, "replayed": self.replayed,
                       "changed": self.changed, "unchanged": self.replayed - self.changed,
                       "not_replayed": self.not_replayed_checks,
                       "broken_lines": self.broken},
            "transitions": [t.to_json() for t in self.transitions],
            "rules": [dataclasses.asdict(r) for r in self.rules],
            "patterns": [p.to_json() for p in self.patterns],
            "examples": [e.to_json() for e in self.examples],
            "not_replayed": [dataclasses.asdict(n) for n in self.not_replayed],
            "broken_lines": [{"where": w, "error": why} for w, why in self.broken_lines],
            "recorded": {"agree": self.recorded_agree,
                         "differ": [{"recorded": code_name(r), "base": code_name(b),
                                     "checks": n} for r, b, n in self.recorded_differ]},
            "replay": {"groups": self.groups, "evaluations": self.evaluations,
                       "seconds": round(self.seconds, 3),
                       "checks_per_second": round(self.checks / self.seconds)
                       if self.seconds > 0 else None},
        }


def side_json(side: Side) -> dict[str, Any]:
    out: dict[str, Any] = {"code": side.code, "status": code_name(side.code),
                           "message": side.message, "rule": side.decider}
    for name, ops in (("request_header_operations", side.request_ops),
                      ("response_header_operations", side.response_ops)):
        if ops:
            out[name] = [{"name": o.name, "value": o.value, "operation": o.operation.name}
                         for o in ops]
    if side.direct_code:
        out["direct_response"] = {"code": side.direct_code, "body": side.body}
    return out


# ---- building ----------------------------------------------------------------------------

def build(tally: Tally, base: Subject, candidate: Subject, traffic: list[str],
          top: int = 10, examples: int = 5) -> DiffReport:
    counts = tally.counts()
    changed = {p: n for p, n in counts.items() if p.change is not None and n}
    differ = sum(tally.recorded_differs.values())
    base_replayed = sum(n for p, n in counts.items() if p.base.replayed)
    where = _Numbering(tally.lines_before(), traffic)
    groups = _Groups(tally.entries, where)
    return DiffReport(
        base=list(base.paths), candidate=list(candidate.paths), traffic=traffic,
        checks=sum(counts.values()), replayed=sum(n for p, n in counts.items() if p.replayed),
        changed=sum(changed.values()), transitions=_transitions(changed),
        rules=_rules(changed), patterns=groups.patterns(top),
        examples=groups.examples(examples, where),
        not_replayed=_not_replayed(counts, base, candidate), broken=tally.broken_count,
        broken_lines=[(where(b.where), b.reason)
                      for b in sorted(tally.broken, key=lambda b: where.order(b.where))],
        recorded_agree=base_replayed - differ,
        recorded_differ=[(r, b, n) for (r, b), n in tally.recorded_differs.most_common()],
        groups=tally.groups, evaluations=tally.evaluations)


class _Numbering:
    """Where → text, numbering the lines of parallel parts of a file from its start."""

    def __init__(self, lines_before: dict[tuple[str, int], int], sources: list[str]) -> None:
        self.lines_before = lines_before
        self.rank = {name: i for i, name in reversed(list(enumerate(sources)))}

    def __call__(self, where: Where | None) -> str:
        if where is None:
            return ""
        return where.text(self.lines_before.get((where.source, where.start), 0))

    def order(self, where: Where | None) -> tuple[int, int, str]:
        """Sources in the order read, then lines (or Kafka positions)."""
        if where is None:
            return (-1, 0, "")
        line = where.line + self.lines_before.get((where.source, where.start), 0)
        return (self.rank.get(where.source, len(self.rank)), line, where.position)


def _transitions(changed: dict[Pair, int]) -> list[Transition]:
    by_change: collections.Counter[Change] = collections.Counter()
    for pair, n in changed.items():
        assert pair.change is not None
        by_change[pair.change] += n
    return [Transition(c, n) for c, n in _ranked(by_change)]


def _rules(changed: dict[Pair, int]) -> list[RuleRow]:
    rows: dict[str, RuleRow] = {}
    for pair, n in changed.items():
        before, after = pair.base.decider, pair.candidate.decider
        if before != after:
            if after is not None:
                rows.setdefault(after, RuleRow(after)).now_decides += n
            if before is not None:
                rows.setdefault(before, RuleRow(before)).no_longer_decides += n
        elif after is not None:
            rows.setdefault(after, RuleRow(after)).decides_differently += n
    return sorted(rows.values(), key=lambda r: (-r.total, r.rule))


_Group = tuple[tuple[tuple[Ref, Any], ...], Change]


class _Groups:
    """Changed entries grouped by pattern and change (parallel workers each have their
    own entries for one pattern): checks per group, and the group's first line that kept
    its attributes."""

    def __init__(self, entries: Iterable[Entry], where: _Numbering) -> None:
        self.counts: collections.Counter[_Group] = collections.Counter()
        self.first: dict[_Group, Entry] = {}
        for entry in entries:
            if entry.pair.change is None or not entry.count:
                continue
            group = (entry.pattern, entry.pair.change)
            self.counts[group] += entry.count
            known = self.first.get(group)
            if entry.attrs is not None and (known is None or where.order(entry.where)
                                            < where.order(known.where)):
                self.first[group] = entry

    def patterns(self, top: int) -> list[Pattern]:
        return [Pattern(_pattern_json(pattern), change, n)
                for (pattern, change), n in _ranked(self.counts)[:top]]

    def examples(self, wanted: int, where: _Numbering) -> list[Example]:
        """The first line of each of the most frequent groups."""
        out = []
        for group, _ in _ranked(self.counts):
            entry = self.first.get(group)
            if entry is None or entry.attrs is None:
                continue
            out.append(Example(where(entry.where), group[1], entry.pair.base,
                               entry.pair.candidate, _redact(entry.attrs)))
            if len(out) >= wanted:
                break
        return out


def _pattern_json(pattern: tuple[tuple[Ref, Any], ...]) -> dict[str, Any]:
    out = {}
    for (name, key), value in pattern:
        secret = name.lower() in _SECRET or (key is not None and key.lower() in _SECRET)
        shown = dict(value) if isinstance(value, MapValue) else value
        out[name if key is None else f"{name}[{key}]"] = \
            REDACTED if secret and value is not None else _redact(shown)
    return out


def _not_replayed(counts: collections.Counter[Pair], base: Subject, candidate: Subject
                  ) -> list[NotReplayed]:
    by: collections.Counter[tuple[str, str]] = collections.Counter()
    for pair, n in counts.items():
        for label, side in (("base", pair.base), ("candidate", pair.candidate)):
            if side.backend is not None:
                by[(label, side.backend)] += n
    reasons = {"base": base.backends, "candidate": candidate.backends}
    return [NotReplayed(label, handler, reasons[label].get(handler, ""), n)
            for (label, handler), n in _ranked(by)]


def _ranked(counts: collections.Counter[Any]) -> list[tuple[Any, int]]:
    """Most frequent first; ties in a stable, readable order."""
    return sorted(counts.items(), key=lambda item: (-item[1], repr(item[0])))


_redactor = Redactor()


def _redact(value: Any) -> Any:
    return _redactor(value)
