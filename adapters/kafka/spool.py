"""The on-disk spool: records that could not be delivered yet, kept across broker outages
and hub restarts.

A spool is a directory of segment files (``000000000001.spool`` …), each a run of lines
``KEY<TAB>MILLIS<TAB>VALUE`` (KEY is JSON text: a string or ``null``; VALUE the record's
JSON, which never holds a raw tab or newline). The oldest segment is read whole, sent,
and deleted only once the brokers acknowledged all of it, so a crash can resend a segment
but never lose one. A ``.lock`` file (``flock``) keeps a second process, or a second
adapter object during a config reload, out of the same directory.

Every method does blocking file I/O: call them from one worker thread, never the loop.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from mixerhub.adapters.kafka.records import OutRecord

_SEGMENT = re.compile(r"(\d{12})\.spool\Z")


@dataclasses.dataclass(frozen=True)
class SegmentRead:
    """One segment's records, and how many of its lines were unreadable (a torn write)."""

    seq: int
    records: list[OutRecord]
    bad_lines: int


class Spool:
    """A bounded directory of segment files (not thread-safe: one thread uses it)."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 1 << 20) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._sizes: dict[int, int] = {}  # seq → bytes, every segment on disk
        self._active: tuple[int, IO[bytes]] | None = None
        self._lock: IO[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> bool:
        """Create the directory and take its lock; False if another holder has it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = open(self.directory / ".lock", "ab")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return False
        self._lock = lock
        self._sizes = {int(m.group(1)): entry.stat().st_size
                       for entry in os.scandir(self.directory)
                       if (m := _SEGMENT.match(entry.name))}
        return True

    def close(self) -> None:
        """Close the segment being written (synced to disk) and release the lock."""
        self._close_active()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def is_open(self) -> bool:
        return self._lock is not None

    # -- state ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes of every segment on disk."""
        return sum(self._sizes.values())

    def __bool__(self) -> bool:
        return any(self._sizes.values())

    # -- writing -------------------------------------------------------------------------

    def append(self, records: Sequence[OutRecord]) -> int:
        """Write records in order until the spool is full; returns how many were written."""
        free = self.max_bytes - self.size
        lines = []
        for record in records:
            line = _line(record)
            if len(line) > free:
                break
            free -= len(line)
            lines.append(line)
        for line in lines:
            self._write(line)
        if self._active is not None:
            self._active[1].flush()
        return len(lines)

    def _write(self, line: bytes) -> None:
        seq, file = self._active_segment()
        file.write(line)
        self._sizes[seq] += len(line)
        if self._sizes[seq] >= self.segment_bytes:
            self._close_active()

    def _active_segment(self) -> tuple[int, IO[bytes]]:
        if self._active is None:
            seq = max(self._sizes, default=0) + 1
            file = open(self.directory / _name(seq), "ab")  # noqa: SIM115 - closed later
            self._sizes[seq] = 0
            self._active = (seq, file)
        return self._active

    def _close_active(self) -> None:
        if self._active is not None:
            _, file = self._active
            self._active = None
            file.flush()
            os.fsync(file.fileno())
            file.close()

    # -- reading -------------------------------------------------------------------------

    def oldest(self) -> SegmentRead | None:
        """The oldest segment's records (the one being written is closed first if it is
        the only one), or None when the spool is empty."""
        for seq in sorted(self._sizes):
            if self._active is not None and self._active[0] == seq:
                self._close_active()
            data = (self.directory / _name(seq)).read_bytes()
            read = _parse(seq, data)
            if read.records or read.bad_lines:
                return read
            self.remove(seq)  # empty: nothing to send
        return None

    def remove(self, seq: int) -> None:
        """Delete a segment whose records were delivered."""
        if self._active is not None and self._active[0] == seq:
            self._close_active()
        self._sizes.pop(seq, None)
        try:
            os.remove(self.directory / _name(seq))
        except FileNotFoundError:
            pass


def _name(seq: int) -> str:
    return f"{seq:012d}.spool"


def _line(record: OutRecord) -> bytes:
    key = json.dumps(record.key, ensure_ascii=False).encode("utf-8")
    return b"%s\t%d\t%s\n" % (key, record.timestamp_ms, record.value)


def _parse(seq: int, data: bytes) -> SegmentRead:
    records, bad = [], 0
    lines = data.split(b"\n")
    if lines and lines[-1]:
        bad += 1  # no newline at the end: a write cut short
    for line in lines[:-1]:
        record = _record(line)
        if record is None:
            bad += 1
        else:
            records.append(record)
    return SegmentRead(seq, records, bad)


def _record(line: bytes) -> OutRecord | None:
    parts = line.split(b"\t", 2)
    if len(parts) != 3:
        return None
    try:
        key: Any = json.loads(parts[0])
        millis = int(parts[1])
    except ValueError:
        return None
    if key is not None and not isinstance(key, str):
        return None
    return OutRecord(key, parts[2], millis)
