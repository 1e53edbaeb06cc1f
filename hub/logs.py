"""Structured logging: JSON lines when stderr is not a terminal, readable lines when it is."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write, so a logger made
    while stderr was replaced (a test's capture, a redirect) never keeps a closed file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "info", json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


def add_processor(processor: Any) -> None:
    """Run ``processor`` just before the renderer, for loggers bound from now on (the hub
    adds its optional ones before it binds any). Adding one of the same type twice is a
    no-op."""
    processors = list(structlog.get_config()["processors"])
    if any(type(p) is type(processor) for p in processors):
        return
    processors.insert(max(len(processors) - 1, 0), processor)
    structlog.configure(processors=processors)


class TraceIds:
    """A processor adding ``trace_id`` and ``span_id`` (hex, as OTLP backends show them)
    while an OpenTelemetry span is current. Installed only when tracing is on
    (hub/tracing.py): making one imports OpenTelemetry, importing this module does not."""

    def __init__(self) -> None:
        from opentelemetry.trace import get_current_span

        self._current = get_current_span

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        context = self._current().get_span_context()
        if context.is_valid:
            event["trace_id"] = format(context.trace_id, "032x")
            event["span_id"] = format(context.span_id, "016x")
        return event


def get_logger(name: str, **bound: Any) -> Any:
    """A bound logger naming its component (``logger=NAME``)."""
    return structlog.get_logger().bind(logger=name, **bound)
