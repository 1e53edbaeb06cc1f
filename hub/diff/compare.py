"""Comparing two verdicts of one check: what changed, and how to name the change.

A verdict *changes* when its status code, its message, its header operations or its
direct response differ. Its lifetime (``valid_duration``, ``valid_use_count``) is not
compared: it decides how long callers cache the answer, not the answer.
"""

from __future__ import annotations

import dataclasses

from mixerhub.diff.replay import Side
from mixerhub.policytest import CODES


def code_name(code: int) -> str:
    return CODES[code] if 0 <= code < len(CODES) else str(code)


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """How a verdict changed: the status codes before and after, and which parts."""

    base_code: int
    candidate_code: int
    parts: tuple[str, ...]  # of "status", "message", "headers", "direct response"

    @property
    def label(self) -> str:
        """``OK → PERMISSION_DENIED``; a change within one code says what changed."""
        text = f"{code_name(self.base_code)} → {code_name(self.candidate_code)}"
        return text if "status" in self.parts else f"{text} ({', '.join(self.parts)})"


def change_of(base: Side, candidate: Side) -> Change | None:
    if base.code != candidate.code:  # a denial drops header operations: status says it all
        return Change(base.code, candidate.code, ("status",))
    parts = []
    if base.message != candidate.message:
        parts.append("message")
    if (base.request_ops, base.response_ops) != (candidate.request_ops,
                                                 candidate.response_ops):
        parts.append("headers")
    if (base.direct_code, base.body) != (candidate.direct_code, candidate.body):
        parts.append("direct response")
    return Change(base.code, candidate.code, tuple(parts)) if parts else None


@dataclasses.dataclass(frozen=True, slots=True)
class Pair:
    """Both configs' answers for a group of checks, compared once."""

    base: Side
    candidate: Side
    change: Change | None

    @property
    def replayed(self) -> bool:
        return self.base.replayed and self.candidate.replayed


class Pairs:
    """Interned pairs: checks that got the same two answers share one :class:`Pair`."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[Side, Side], Pair] = {}

    def get(self, base: Side, candidate: Side) -> Pair:
        pair = self._pairs.get((base, candidate))
        if pair is None:
            replayed = base.replayed and candidate.replayed
            pair = Pair(base, candidate, change_of(base, candidate) if replayed else None)
            self._pairs[(base, candidate)] = pair
        return pair
