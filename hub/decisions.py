"""Recorded checks: each Check decision as an event, written to sinks and read back.

The policy engine hands every decision to a :class:`DecisionRecorder`, which queues it
and returns at once; a background task encodes events (the JSON form of
``docs/json.md``, secrets redacted) and offers the lines to each sink through the sink's
own bounded queue, so neither a check nor another sink ever waits on a slow sink. A full
queue drops and counts (``mixerhub_decision_events_total{sink,result="dropped"}``).

Sinks: :class:`FileSink` (a bounded, rotating JSON-lines file) and a Kafka topic
(``mixerhub.adapters.kafka.decisions``). :func:`read_decisions` turns recorded lines back
into attribute values and verdicts, for replaying traffic against another config. The
event format is documented in ``docs/decisions.md``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from mixerhub.attributes.bag import Reference
from mixerhub.attributes.types import Manifest, default_manifest
from mixerhub.errors import MixerhubError
from mixerhub.expr.values import parse_rfc3339
from mixerhub.jsonform import format_timestamp, parse_duration, values_from_json, \
    values_to_json, verdict_to_json
from mixerhub.logs import get_logger
from mixerhub.metrics import Metrics
from mixerhub.redact import Redactor, default_redactor
from mixerhub.verdict import CheckOutcome, HeaderOp, HeaderOperation, Verdict, http_status

#: The ``schema_version`` of the events this code writes (docs/schemas/).
SCHEMA_VERSION = 1
_BATCH = 1_000
# Reused (stateless): json.dumps with options builds a new encoder per call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class IdSource:
    """Ids unique across processes and restarts: a random prefix and a counter (cheaper
    than a UUID per event)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}-{next(self._count):x}"


@dataclasses.dataclass(frozen=True, slots=True)
class DecisionEvent:
    """One check: the whole bag as decoded (redacted only when written), the outcome (its
    verdict carries the referenced attributes and the rules that applied) and the
    version of the config snapshot that decided."""

    id: str
    time: dt.datetime
    values: Mapping[str, Any]
    outcome: CheckOutcome
    snapshot_version: int

    def to_json(self, redact: Callable[[Any], Any] = default_redactor) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "id": self.id,
                "time": format_timestamp(self.time),
                "snapshot_version": self.snapshot_version,
                "attributes": redact(values_to_json(self.values)),
                "rules": list(self.outcome.verdict.rules),
                "verdict": verdict_to_json(self.outcome)}


def encode_event(event: DecisionEvent, redact: Callable[[Any], Any] = default_redactor
                 ) -> bytes:
    """The event as one JSON line (without the newline)."""
    return _ENCODE(event.to_json(redact)).encode("utf-8")


class DecisionSink(Protocol):
    """Where recorded decisions go. ``write`` gets encoded events, one JSON line each,
    and is never called again before it returned."""

    name: str

    async def start(self) -> None: ...

    async def write(self, lines: Sequence[bytes]) -> None: ...

    async def stop(self) -> None: ...


# ---- the recorder ------------------------------------------------------------------------

class _SinkQueue:
    """One sink's bounded queue and the task that drains it."""

    def __init__(self, sink: DecisionSink, limit: int, metrics: Metrics, log: Any) -> None:
        self.sink = sink
        self.limit = limit
        self.log = log
        self.lines: collections.deque[bytes] = collections.deque()
        self.ready = asyncio.Event()
        self.closing = False
        self.task: asyncio.Task[None] | None = None
        self.written, self.dropped, self.failed = (
            metrics.decision_events.labels(sink.name, result)
            for result in ("written", "dropped", "failed"))

    def offer(self, lines: Sequence[bytes]) -> None:
        room = self.limit - len(self.lines)
        if room < len(lines):
            self.dropped.inc(len(lines) - max(room, 0))
        self.lines.extend(lines[:max(room, 0)])
        self.ready.set()

    async def run(self) -> None:
        while not self.closing:
            await self.ready.wait()
            self.ready.clear()
            await self.drain()

    async def close(self) -> None:
        """Write what is queued (a write in progress finishes first), then stop the sink."""
        self.closing = True
        self.ready.set()
        if self.task is not None:
            await self.task
        await self.drain()
        await self.sink.stop()

    async def drain(self) -> None:
        while self.lines:
            batch = [self.lines.popleft() for _ in range(min(_BATCH, len(self.lines)))]
            try:
                await self.sink.write(batch)
            except Exception as exc:  # noqa: BLE001 - counted and logged; recording goes on
                self.failed.inc(len(batch))
                self.log.error("decision sink failed", sink=self.sink.name,
                               events=len(batch), error=str(exc) or type(exc).__name__)
            else:
                self.written.inc(len(batch))


class DecisionRecorder:
    """Fans check decisions out to sinks; :meth:`record` never waits."""

    def __init__(self, sinks: Sequence[DecisionSink], metrics: Metrics,
                 queue_limit: int = 10_000, redactor: Redactor = default_redactor,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.log = get_logger("mixerhub.decisions")
        self.queue_limit = queue_limit
        self._redact = redactor
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self._ids = IdSource()
        self._events: collections.deque[DecisionEvent] = collections.deque()
        self._ready = asyncio.Event()
        self._dropped = metrics.decision_events.labels("queue", "dropped")
        self._sinks = [_SinkQueue(s, queue_limit, metrics, self.log) for s in sinks]
        self._pump: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def sinks(self) -> list[DecisionSink]:
        return [q.sink for q in self._sinks]

    def record(self, values: Mapping[str, Any], outcome: CheckOutcome,
               snapshot_version: int) -> None:
        """Queue one decision (dropped and counted when the queue is full, or when the
        recorder has already stopped: then nothing would ever write it)."""
        if len(self._events) >= self.queue_limit or self._stopped:
            self._dropped.inc()
            return
        self._events.append(DecisionEvent(self._ids(), self._clock(), values, outcome,
                                          snapshot_version))
        self._ready.set()

    async def start(self) -> None:
        for queue in self._sinks:
            await queue.sink.start()
            queue.task = asyncio.create_task(queue.run())
        self._pump = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Write what is queued, then stop every sink."""
        self._stopped = True
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        self._encode_queued()
        for queue in self._sinks:
            await queue.close()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            self._encode_queued()
            await asyncio.sleep(0)  # let checks run between batches

    def _encode_queued(self) -> None:
        while self._events:
            batch = [self._events.popleft() for _ in range(min(_BATCH, len(self._events)))]
            lines = []
            for event in batch:
                line = self._encode(event)
                if line is not None:
                    lines.append(line)
            for queue in self._sinks:
                queue.offer(lines)

    def _encode(self, event: DecisionEvent) -> bytes | None:
        try:
            return encode_event(event, self._redact)
        except (TypeError, ValueError) as exc:  # a value with no JSON form
            self._dropped.inc()
            self.log.warning("decision not recorded", id=event.id, error=str(exc))
            return None


def recorder_from_settings(settings: Any, metrics: Metrics) -> DecisionRecorder | None:
    """The recorder the hub's process settings ask for (``--record-checks``,
    ``--record-kafka``), or None when checks are not recorded."""
    sinks: list[DecisionSink] = []
    if settings.record_checks:
        sinks.append(FileSink(settings.record_checks, settings.record_max_bytes,
                              settings.record_backups))
    if settings.record_kafka:
        sinks.append(_kafka_sink(settings, metrics))
    return DecisionRecorder(sinks, metrics) if sinks else None


def _kafka_sink(settings: Any, metrics: Metrics) -> DecisionSink:
    from pydantic import ValidationError

    from mixerhub.adapters.kafka.decisions import KafkaDecisionSink
    from mixerhub.config.files import ConfigError

    try:
        return KafkaDecisionSink(settings.record_kafka, settings.record_kafka_topic,
                                 settings.record_kafka_spool or None, metrics)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(f"--record-kafka: {problems}") from None


# ---- the file sink -----------------------------------------------------------------------

class FileSink:
    """Appends JSON lines to ``path``; before a line would take the file past
    ``max_bytes`` it becomes ``path.1`` (older backups shift up; beyond ``backups`` they
    are deleted). Writes happen in a worker thread."""

    name = "file"

    def __init__(self, path: str | Path, max_bytes: int = 100 << 20, backups: int = 5) -> None:
        self.path = Path(path)
        self.max_bytes = max(1, max_bytes)
        self.backups = max(0, backups)
        self._file: IO[bytes] | None = None
        self._size = 0

    async def start(self) -> None:
        await asyncio.to_thread(self._open)

    async def write(self, lines: Sequence[bytes]) -> None:
        await asyncio.to_thread(self._write, lines)

    async def stop(self) -> None:
        await asyncio.to_thread(self._close)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held until stop()
        self._size = self._file.tell()

    def _write(self, lines: Sequence[bytes]) -> None:
        if self._file is None:
            self._open()
        for line in lines:
            data = line + b"\n"
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            assert self._file is not None
            self._file.write(data)
            self._size += len(data)
        assert self._file is not None
        self._file.flush()

    def _rotate(self) -> None:
        self._close()
        for index in range(self.backups, 0, -1):
            older = _backup(self.path, index)
            if not older.exists():
                continue
            if index == self.backups:
                older.unlink()
            else:
                os.replace(older, _backup(self.path, index + 1))
        if self.backups:
            os.replace(self.path, _backup(self.path, 1))
        else:
            self.path.unlink()
        self._open()

    def _close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()


def _backup(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def decision_files(path: str | Path) -> list[Path]:
    """A recorded file and its rotated backups, oldest first (``f.3, f.2, f.1, f``)."""
    path = Path(path)
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)\Z")
    found = sorted(((int(m.group(1)), Path(e.path)) for e in os.scandir(path.parent)
                    if (m := pattern.match(e.name))), reverse=True)
    return [p for _, p in found] + ([path] if path.exists() else [])


# ---- reading back ------------------------------------------------------------------------

class DecisionReadError(MixerhubError):
    """A recorded decision that cannot be read (names the source and line)."""

    code = "decision_read_error"


@dataclasses.dataclass(frozen=True)
class RecordedDecision:
    """One decision read back: the bag's values (typed by the manifest; secrets stay
    ``[REDACTED]``), the verdict as recorded, and where it came from."""

    id: str
    time: dt.datetime | None
    values: dict[str, Any]
    verdict: Verdict
    snapshot_version: int
    source: str
    line: int


def read_decisions(source: str | os.PathLike[str] | Iterable[str | bytes],
                   manifest: Manifest | None = None,
                   on_error: Callable[[DecisionReadError], None] | None = None
                   ) -> Iterator[RecordedDecision]:
    """Recorded decisions from a file (path) or from lines (any iterable of text or bytes,
    such as Kafka record values). A line that cannot be read raises
    :class:`DecisionReadError` naming source and line, or, with ``on_error``, is passed to
    it and skipped. Empty lines are skipped."""
    manifest = manifest if manifest is not None else default_manifest()
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open(name, "rb") as file:
            yield from _read_lines(file, name, manifest, on_error)
    else:
        yield from _read_lines(source, "<lines>", manifest, on_error)


def _read_lines(lines: Iterable[str | bytes], name: str, manifest: Manifest,
                on_error: Callable[[DecisionReadError], None] | None
                ) -> Iterator[RecordedDecision]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield decision_from_json(json.loads(line), manifest, name, number)
        except (ValueError, TypeError, KeyError, MixerhubError) as exc:
            error = DecisionReadError(f"{name}:{number}: {_reason(exc)}")
            if on_error is None:
                raise error from None
            on_error(error)


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg} (column {exc.colno})"
    return str(exc) or type(exc).__name__


def decision_from_json(obj: Any, manifest: Manifest, source: str = "", line: int = 0
                       ) -> RecordedDecision:
    """One event object (as :meth:`DecisionEvent.to_json` made it) read back."""
    if not isinstance(obj, dict):
        raise TypeError("a recorded decision must be a JSON object")
    if obj.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"unknown schema_version {obj.get('schema_version')!r}")
    values = values_from_json(obj["attributes"], manifest)
    verdict = verdict_from_json(obj["verdict"], tuple(obj.get("rules") or ()))
    return RecordedDecision(str(obj["id"]), _time(obj.get("time")), values, verdict,
                            int(obj["snapshot_version"]), source, line)


def _time(text: Any) -> dt.datetime | None:
    return parse_rfc3339(text) if isinstance(text, str) else None


def verdict_from_json(obj: Mapping[str, Any], rules: tuple[str, ...] = ()) -> Verdict:
    """The inverse of :func:`mixerhub.jsonform.verdict_to_json` for the precondition
    verdict. A direct response is recognised by its body or by an HTTP status that its
    code would not give."""
    status = obj["status"]
    code = int(status["code"])
    duration = parse_duration(obj["valid_duration"])
    if duration is None:
        raise ValueError(f"valid_duration {obj['valid_duration']!r} is not a duration")
    http = int(obj.get("http_status", http_status(code)))
    body = str(obj.get("body", ""))
    direct = http if body or http != http_status(code) else 0
    return Verdict(code, str(status.get("message", "")), duration,
                   int(obj["valid_use_count"]),
                   tuple(parse_reference(r) for r in obj.get("referenced", ())),
                   _ops(obj.get("request_header_operations", ())),
                   _ops(obj.get("response_header_operations", ())), direct, body, rules)


def _ops(items: Iterable[Mapping[str, Any]]) -> tuple[HeaderOp, ...]:
    return tuple(HeaderOp(str(op["name"]), str(op.get("value", "")),
                          HeaderOperation[str(op.get("operation", "REPLACE"))])
                 for op in items)


def parse_reference(text: str) -> Reference:
    """``name``, ``-name``, ``map[key]`` or ``-map[key]`` (the conformance notation)."""
    present = not text.startswith("-")
    body = text if present else text[1:]
    if body.endswith("]") and "[" in body:
        name, _, key = body[:-1].partition("[")
        return Reference(name, key, present)
    return Reference(body, None, present)
