"""Where recorded checks come from: JSON-lines files (a path with its rotated backups, a
glob, or ``-`` for standard input) and Kafka topics (``kafka://HOST:PORT[,…]/TOPIC``,
read from the beginning to the end it had when the replay started)."""

from __future__ import annotations

import dataclasses
import glob
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Protocol

from mixerhub.decisions import decision_files
from mixerhub.errors import MixerhubError

_READ_HINT = 1 << 20  # bytes of lines per batch
KAFKA_PREFIX = "kafka://"


class SourceError(MixerhubError):
    """A traffic source that cannot be opened or read to its end."""

    code = "traffic_source_error"


@dataclasses.dataclass(frozen=True, slots=True)
class Where:
    """Where a line was: a file and line number, or a Kafka record's position. ``start``
    is the byte at which the part of the file holding it began (parallel runs number the
    lines of each part from 1; the report adds the lines of the parts before)."""

    source: str
    line: int = 0
    position: str = ""
    start: int = 0

    def text(self, lines_before: int = 0) -> str:
        if self.position:
            return f"{self.source}{self.position}"
        return f"{self.source}:{self.line + lines_before}"


@dataclasses.dataclass(slots=True)
class Batch:
    """Consecutive lines of one source; ``done`` is the source's progress after them
    (bytes of a file, records of a topic)."""

    source: str
    lines: list[bytes]
    first: int = 1  # line number of lines[0]
    positions: list[str] | None = None  # per line, where numbers do not apply (Kafka)
    done: int = 0
    start: int = 0  # see Where.start

    def where(self, index: int) -> Where:
        if self.positions is not None:
            return Where(self.source, 0, self.positions[index])
        return Where(self.source, self.first + index, "", self.start)


class Source(Protocol):
    name: str

    async def open(self) -> int | None:
        """Get ready; returns the size in progress units, None when unknown."""

    def batches(self) -> AsyncIterator[Batch]: ...

    async def close(self) -> None: ...


class FileSource:
    """One JSON-lines file (``-``: standard input), or the lines that start within
    ``[start, end)`` of it (``end`` None: to the end)."""

    def __init__(self, path: str, start: int = 0, end: int | None = None) -> None:
        self.name = path
        self.start = start
        self.end = end
        self._file: IO[bytes] | None = None

    async def open(self) -> int | None:
        if self.name == "-":
            self._file = sys.stdin.buffer
            return None
        try:
            self._file = open(self.name, "rb")  # noqa: SIM115 - closed by close()
            size = os.fstat(self._file.fileno()).st_size
        except OSError as exc:
            raise SourceError(f"{self.name}: {exc.strerror or exc}") from None
        self._file.seek(self.start)
        return (size if self.end is None else self.end) - self.start

    async def batches(self) -> AsyncIterator[Batch]:
        assert self._file is not None
        first, seekable = 1, self._file.seekable()
        while lines := self._file.readlines(_READ_HINT):
            at = self._file.tell() if seekable else 0
            if self.end is not None and at > self.end:
                lines, at = _cut(lines, at, self.end)
            yield Batch(self.name, lines, first, None, at - self.start if seekable else 0,
                        self.start)
            first += len(lines)
            if self.end is not None and at >= self.end:
                return

    async def close(self) -> None:
        if self._file is not None and self._file is not sys.stdin.buffer:
            self._file.close()
        self._file = None


def _cut(lines: list[bytes], at: int, end: int) -> tuple[list[bytes], int]:
    """Drop the lines that start at or after ``end`` (``at``: the offset after them)."""
    while lines and at - len(lines[-1]) >= end:
        at -= len(lines.pop())
    return lines, at


def line_start(file: IO[bytes], offset: int) -> int:
    """The offset of the first line that starts at or after ``offset``."""
    if offset <= 0:
        return 0
    file.seek(offset - 1)
    if file.read(1) == b"\n":
        return offset
    file.readline()
    return file.tell()


def expand(spec: str) -> list[Source]:
    """The sources one ``--traffic`` value names: ``kafka://BROKERS/TOPIC``; ``-``; a glob
    (sorted); or a recorded file with its rotated backups, oldest first."""
    if spec.startswith(KAFKA_PREFIX):
        from mixerhub.diff.kafka import KafkaSource

        return [KafkaSource.parse(spec)]
    if spec == "-":
        return [FileSource("-")]
    if glob.has_magic(spec):
        paths = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
        if not paths:
            raise SourceError(f"{spec}: no file matches")
        return [FileSource(p) for p in paths]
    try:
        files = decision_files(spec)
    except OSError:
        files = []
    if not files:
        raise SourceError(f"{spec}: no such file (nor rotated backups {Path(spec).name}.N)")
    return [FileSource(str(p)) for p in files]
