"""The diff report as text for a terminal: a few aligned tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mixerhub.diff.compare import code_name
from mixerhub.diff.replay import Side
from mixerhub.diff.report import DiffReport

_SHOWN_BROKEN = 10
_VALUE_WIDTH = 40


def render(report: DiffReport) -> str:
    parts = [_heading(report), _transitions(report), _rules(report), _patterns(report),
             _examples(report), _not_replayed(report), _broken(report), _recorded(report)]
    return "\n\n".join(p for p in parts if p) + "\n"


def _heading(r: DiffReport) -> str:
    share = f" ({r.changed / r.replayed:.2%})" if r.replayed else ""
    speed = f", {r.checks / r.seconds:,.0f} checks/s" if r.seconds > 0 else ""
    lines = [f"base:      {' '.join(r.base)}", f"candidate: {' '.join(r.candidate)}",
             f"traffic:   {', '.join(r.traffic)} ({r.seconds:.1f} s{speed})", "",
             f"{r.checks:,} checks read, {r.replayed:,} replayed: {r.changed:,} changed"
             f"{share}"]
    if r.not_replayed_checks:
        lines[-1] += f", {r.not_replayed_checks:,} not replayed"
    if r.broken:
        lines[-1] += f"; {r.broken:,} broken line{'s' if r.broken != 1 else ''}"
    return "\n".join(lines)


def _transitions(r: DiffReport) -> str:
    if not r.transitions:
        return "No verdict changes." if r.replayed else ""
    return table("Status transitions", ["base → candidate", "checks"],
                 [[t.change.label, f"{t.checks:,}"] for t in r.transitions])


def _rules(r: DiffReport) -> str:
    if not r.rules:
        return ""
    return table("Rules whose denial decides a changed check",
                 ["rule", "now decides", "no longer decides", "decides differently"],
                 [[x.rule, f"{x.now_decides:,}", f"{x.no_longer_decides:,}",
                   f"{x.decides_differently:,}"] for x in r.rules])


def _patterns(r: DiffReport) -> str:
    if not r.patterns:
        return ""
    return table("Top changed attribute patterns", ["referenced values", "checks", "change"],
                 [[pattern_text(p.attributes), f"{p.checks:,}", p.change.label]
                  for p in r.patterns])


def pattern_text(attributes: dict[str, Any]) -> str:
    """``name=value`` for each referenced attribute; ``-name`` when it was absent."""
    if not attributes:
        return "(no attribute read)"
    return "  ".join(f"-{name}" if value is None else f"{name}={_short(value)}"
                     for name, value in attributes.items())


def _examples(r: DiffReport) -> str:
    if not r.examples:
        return ""
    lines = ["Examples"]
    for e in r.examples:
        lines += [f"  {e.where}  {e.change.label}",
                  f"    base:       {side_text(e.base)}",
                  f"    candidate:  {side_text(e.candidate)}",
                  f"    attributes: {json.dumps(e.attributes, ensure_ascii=False)}"]
    return "\n".join(lines)


def side_text(side: Side) -> str:
    text = code_name(side.code)
    if side.message:
        text += f" {side.message!r}"
    if side.decider:
        text += f" (rule {side.decider})"
    ops = len(side.request_ops) + len(side.response_ops)
    if ops:
        text += f", {ops} header operation{'s' if ops != 1 else ''}"
    return text


def _not_replayed(r: DiffReport) -> str:
    if not r.not_replayed:
        return ""
    return table("Not replayed (the check reaches a handler with external state)",
                 ["config", "handler", "would contact", "checks"],
                 [[n.config, n.handler, n.reason, f"{n.checks:,}"] for n in r.not_replayed])


def _broken(r: DiffReport) -> str:
    if not r.broken:
        return ""
    lines = [f"Broken lines: {r.broken:,} (skipped)"]
    lines += [f"  {where}: {why}" for where, why in r.broken_lines[:_SHOWN_BROKEN]]
    if r.broken > _SHOWN_BROKEN:
        lines.append(f"  … {r.broken - _SHOWN_BROKEN:,} more (all in --json)")
    return "\n".join(lines)


def _recorded(r: DiffReport) -> str:
    if not r.recorded_differ:
        return f"Base replay agrees with the recorded verdicts ({r.recorded_agree:,} checks)." \
            if r.recorded_agree else ""
    differ = sum(n for _, _, n in r.recorded_differ)
    return table(f"Base replay vs recorded verdicts: {r.recorded_agree:,} agree, "
                 f"{differ:,} differ (quota denials, redacted secrets, time, or another "
                 "config recorded them)", ["recorded", "base replay", "checks"],
                 [[code_name(a), code_name(b), f"{n:,}"] for a, b, n in r.recorded_differ])


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A title line, then columns: numbers right-aligned, text left-aligned."""
    columns = list(zip(headers, *rows))
    widths = [max(len(x) for x in col) for col in columns]
    numeric = [all(x[:1].isdigit() for x in col[1:]) for col in columns]

    def line(cells: Sequence[str]) -> str:
        return "  " + "  ".join(c.rjust(w) if num else c.ljust(w)
                                for c, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([title, line(headers), *(line(r) for r in rows)])


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _VALUE_WIDTH else text[:_VALUE_WIDTH - 1] + "…"
