"""Progress of a long replay on stderr: a bar redrawn in place on a terminal, a plain line
every few seconds otherwise (CI logs), nothing for runs shorter than that."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

_TTY_EVERY = 0.2  # seconds between redraws
_PLAIN_EVERY = 5.0
_BAR = 30


class Progress:
    def __init__(self, out: TextIO | None = None, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out if out is not None else sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.clock = clock
        self.total: int | None = None
        self.started = clock()
        self._next = self.started + (_TTY_EVERY if self.tty else _PLAIN_EVERY)
        self._drawn = False

    def start(self, total: int | None) -> None:
        """``total``: progress units of all sources (bytes, records), None if unknown."""
        self.total = total

    def update(self, done: int, checks: int) -> None:
        now = self.clock()
        if now < self._next:
            return
        self._next = now + (_TTY_EVERY if self.tty else _PLAIN_EVERY)
        text = self._text(done, checks, now)
        if self.tty:
            self.out.write("\r" + text)
        else:
            self.out.write(f"mixerhub diff: {text}\n")
        self.out.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn and self.tty:
            self.out.write("\r\033[K")
            self.out.flush()

    def _text(self, done: int, checks: int, now: float) -> str:
        rate = checks / max(now - self.started, 1e-9)
        counts = f"{checks:,} checks, {rate:,.0f}/s"
        if not self.total:
            return counts
        share = min(done / self.total, 1.0)
        if not self.tty:
            return f"{share:.0%} ({counts})"
        filled = int(share * _BAR)
        return f"[{'#' * filled}{'.' * (_BAR - filled)}] {share:4.0%}  {counts}"
