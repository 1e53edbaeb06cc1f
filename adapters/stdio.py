"""The ``stdio`` adapter: logentry and metric instances as lines on stdout, stderr or a file.

Params use Istio 1.4's names (``logStream``, ``outputAsJson``, ``maxRotatedFiles`` …) so
Istio's stdio handlers load unchanged. One line per instance, JSON by default, in the
shape Istio's Mixer wrote (``level``, ``time``, ``instance``, then the fields), values in
the hub's JSON form and secrets redacted. See ``docs/adapters/stdio.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import AliasChoices, BaseModel, Field, model_validator

from mixerhub import hookimpl
from mixerhub.adapter import AdapterEnv, BaseAdapter, Clock, Params, Status
from mixerhub.jsonform import format_timestamp, to_json
from mixerhub.plugins import AdapterRegistry
from mixerhub.redact import default_redactor
from mixerhub.templates.instance import Instance

Level = Literal["INFO", "WARNING", "ERROR"]
Stream = Literal["STDOUT", "STDERR", "FILE", "ROTATED_FILE"]

_RANK: dict[str, int] = {"INFO": 0, "WARNING": 1, "ERROR": 2}
# zap's lowercase level names, which is what Mixer's stdio lines carried.
_LEVEL_TEXT: dict[str, str] = {"INFO": "info", "WARNING": "warn", "ERROR": "error"}
_MIB = 1024 * 1024

#: Istio's default severity table; a handler's own ``severityLevels`` replaces it.
DEFAULT_SEVERITY_LEVELS: dict[str, Level] = {
    **dict.fromkeys(("INFORMATIONAL", "informational", "INFO", "info"), "INFO"),
    **dict.fromkeys(("WARNING", "warning", "WARN", "warn"), "WARNING"),
    **dict.fromkeys(("ERROR", "error", "ERR", "err", "FATAL", "fatal"), "ERROR"),
}


def _names(*names: str) -> AliasChoices:
    """Keys accepted for one field: Istio's JSON name first (used in errors and schema)."""
    return AliasChoices(*names)


class StdioParams(Params):
    """The ``params`` of a ``compiledAdapter: stdio`` handler."""

    log_stream: Stream = Field(
        "STDOUT", validation_alias=_names("logStream", "outputStream"),
        description="where lines go: STDOUT, STDERR, FILE or ROTATED_FILE "
                    "(outputStream is accepted as another name)")
    severity_levels: dict[str, Level] = Field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_LEVELS),
        validation_alias=_names("severityLevels"),
        description="logentry severity text → INFO, WARNING or ERROR; replaces Istio's "
                    "default table; a severity not listed is INFO")
    metric_level: Level = Field("INFO", validation_alias=_names("metricLevel"),
                                description="the level of metric lines")
    output_as_json: bool = Field(True, validation_alias=_names("outputAsJson"),
                                 description="JSON lines (true) or key=value lines (false)")
    output_level: Level = Field("INFO", validation_alias=_names("outputLevel"),
                                description="lines below this level are not written")
    output_path: str = Field("", validation_alias=_names("outputPath"),
                             description="the file for FILE and ROTATED_FILE; parent "
                                         "directories are created")
    max_megabytes_before_rotation: float = Field(
        100, ge=0, validation_alias=_names("maxMegabytesBeforeRotation"),
        description="ROTATED_FILE: rotate before the file would grow past this many MiB "
                    "(fractions allowed; 0 means 100)")
    max_days_before_rotation: int = Field(
        30, ge=0, validation_alias=_names("maxDaysBeforeRotation"),
        description="ROTATED_FILE: delete backups older than this many days (0: keep)")
    max_rotated_files: int = Field(
        1000, ge=0, validation_alias=_names("maxRotatedFiles", "maxBackupsBeforeRotation"),
        description="ROTATED_FILE: keep at most this many backups (0: no limit; "
                    "maxBackupsBeforeRotation is accepted as another name)")

    @model_validator(mode="after")
    def _path_matches_stream(self) -> StdioParams:
        # Same rule as Istio's validation, so a config valid there is valid here.
        to_file = self.log_stream in ("FILE", "ROTATED_FILE")
        if to_file and not self.output_path:
            raise ValueError(f"outputPath is required when logStream is {self.log_stream}")
        if not to_file and self.output_path:
            raise ValueError(f"outputPath cannot be set when logStream is {self.log_stream}")
        return self


# ---- records: instance → ordered mapping → text -----------------------------------------

class _Renderer:
    """Turns one instance into its line, or None when its level is below outputLevel."""

    def __init__(self, params: StdioParams, clock: Clock) -> None:
        self._severity = dict(params.severity_levels)
        self._metric_level = params.metric_level
        self._min_rank = _RANK[params.output_level]
        self._json = params.output_as_json
        self._clock = clock

    def __call__(self, instance: Instance) -> str | None:
        level = self._level(instance)
        if _RANK[level] < self._min_rank:
            return None
        record: dict[str, Any] = {"level": _LEVEL_TEXT[level], "time": self._time(instance),
                                  "instance": instance.name}
        if instance.template == "metric":
            record["value"] = to_json(instance.get("value"))
            _add_fields(record, instance.get("dimensions") or {}, "dimensions.")
        else:
            _add_fields(record, instance.get("variables") or {}, "variables.")
        return _to_json_line(record) if self._json else _to_logfmt_line(record)

    def _level(self, instance: Instance) -> str:
        if instance.template == "metric":
            return self._metric_level
        return self._severity.get(str(instance.get("severity") or ""), "INFO")

    def _time(self, instance: Instance) -> str:
        stamp = instance.get("timestamp")
        return format_timestamp(stamp if isinstance(stamp, dt.datetime) else self._clock.now())


def _add_fields(record: dict[str, Any], fields: Mapping[str, Any], prefix: str) -> None:
    """Adds the fields in name order, redacted; one whose name is taken (level, time,
    instance, a metric's value) goes under ``prefix`` so nothing is silently lost."""
    safe = default_redactor(to_json(dict(fields)))
    for key in sorted(safe):
        record[prefix + key if key in record else key] = safe[key]


def _to_json_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


_BARE = re.compile(r'[^\s"=\\]+\Z')


def _to_logfmt_line(record: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={_logfmt_value(value)}" for key, value in record.items())


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # Quote whatever would make the line ambiguous: spaces, quotes, "=", or nothing.
    return text if _BARE.match(text) else json.dumps(text, ensure_ascii=False)


# ---- sinks -------------------------------------------------------------------------------

class _Sink(Protocol):
    def write(self, lines: Sequence[str]) -> None: ...

    def close(self) -> None: ...


class _StdSink:
    """stdout or stderr, looked up at each write so a replaced ``sys.stdout`` is honoured."""

    def __init__(self, name: str) -> None:
        self._name = name

    def write(self, lines: Sequence[str]) -> None:
        stream = getattr(sys, self._name)
        stream.write("".join(line + "\n" for line in lines))
        stream.flush()

    def close(self) -> None:
        getattr(sys, self._name).flush()


class _FileSink:
    """Appends to one file, opened on first use (and again after a failed open)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Any = None
        self.size = 0

    def open(self) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - held until close()
            self.size = os.fstat(self._file.fileno()).st_size

    def write(self, lines: Sequence[str]) -> None:
        self.open()
        for line in lines:
            self._write_one((line + "\n").encode("utf-8"))
        self._file.flush()

    def _write_one(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()


class _RotatingSink(_FileSink):
    """A file rotated by size: ``path`` → ``path.1`` → ``path.2`` …, newest backup first.

    Pruning by count and by age happens at each rotation, as Istio's lumberjack did.
    """

    def __init__(self, path: Path, max_bytes: int, keep: int, max_age: dt.timedelta | None,
                 clock: Clock, on_error: Callable[[str, OSError], None]) -> None:
        super().__init__(path)
        self.max_bytes, self.keep, self.max_age = max_bytes, keep, max_age
        self._clock, self._on_error = clock, on_error

    def _write_one(self, data: bytes) -> None:
        if self.size and self.size + len(data) > self.max_bytes:
            self.rotate()
        super()._write_one(data)

    def rotate(self) -> None:
        self.close()
        try:
            self._shift_backups()
            os.replace(self.path, self._backup(1))
            self._prune_by_age()
        except OSError as exc:
            # Keep writing to the current file: losing lines is worse than a big file.
            self._on_error("rotation failed", exc)
        self.open()

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def backups(self) -> list[int]:
        """Indices of the existing backups, ascending (one directory scan, no stat storm)."""
        pattern = re.compile(re.escape(self.path.name) + r"\.(\d+)\Z")
        found = (pattern.match(entry.name) for entry in os.scandir(self.path.parent))
        return sorted(int(m.group(1)) for m in found if m)

    def _shift_backups(self) -> None:
        for index in reversed(self.backups()):
            if self.keep and index >= self.keep:
                os.remove(self._backup(index))
            else:
                os.replace(self._backup(index), self._backup(index + 1))

    def _prune_by_age(self) -> None:
        if self.max_age is None:
            return
        oldest = (self._clock.now() - self.max_age).timestamp()
        for index in self.backups():
            backup = self._backup(index)
            if backup.stat().st_mtime < oldest:
                backup.unlink()


# ---- the adapter -------------------------------------------------------------------------

class StdioAdapter(BaseAdapter):
    """Writes logentry and metric instances, one line each."""

    name: ClassVar[str] = "stdio"
    Params: ClassVar[type[BaseModel]] = StdioParams
    templates: ClassVar[frozenset[str]] = frozenset({"logentry", "metric"})

    def __init__(self, params: StdioParams, env: AdapterEnv) -> None:
        super().__init__(params, env)
        self._render = _Renderer(params, env.clock)
        self.sink: _Sink = self._make_sink(params)

    def _make_sink(self, params: StdioParams) -> _Sink:
        if params.log_stream in ("STDOUT", "STDERR"):
            return _StdSink(params.log_stream.lower())
        path = Path(params.output_path)
        if params.log_stream == "FILE":
            return _FileSink(path)
        megabytes = params.max_megabytes_before_rotation or 100
        max_days = params.max_days_before_rotation
        return _RotatingSink(path, max(1, int(megabytes * _MIB)), params.max_rotated_files,
                             dt.timedelta(days=max_days) if max_days else None,
                             self.env.clock, self._failed)

    async def start(self) -> None:
        # A file that cannot be opened yet is an ERROR status, not a failed config load:
        # telemetry must not block policy, and the next batch tries again.
        self.status = Status.OK
        if isinstance(self.sink, _FileSink):
            try:
                self.sink.open()
            except OSError as exc:
                self._failed("cannot open output file", exc)

    async def stop(self) -> None:
        try:
            self.sink.close()
        except OSError as exc:
            self._failed("closing output failed", exc)
        self.status = Status.NOT_READY

    async def report(self, instances: Sequence[Instance]) -> None:
        lines = self._lines(instances)
        if not lines:
            return
        try:
            self.sink.write(lines)
        except OSError as exc:
            self._failed(f"write failed, {len(lines)} lines lost", exc)
            return
        self.status = Status.OK

    def _lines(self, instances: Sequence[Instance]) -> list[str]:
        lines: list[str] = []
        errors: list[Exception] = []
        for instance in instances:
            try:
                line = self._render(instance)
            except (TypeError, ValueError) as exc:  # a value with no JSON form
                errors.append(exc)
                continue
            if line is not None:
                lines.append(line)
        if errors:
            self._count_bad(errors)
        return lines

    def _count_bad(self, errors: list[Exception]) -> None:
        # One log line per batch, not per instance: a bad rule can fire at request rate.
        for _ in errors:
            self.env.on_error()
        self.env.logger.warning("stdio: instances not written", handler=self.env.handler,
                                count=len(errors), error=str(errors[-1]))

    def _failed(self, what: str, exc: OSError) -> None:
        self.status = Status.ERROR
        self.env.on_error()
        self.env.logger.error(f"stdio: {what}", handler=self.env.handler, error=str(exc))


@hookimpl
def mixerhub_register_adapters(registry: AdapterRegistry) -> None:
    registry.register(StdioAdapter)
