"""Fixtures of the tracing tests: a real OTLP receiver, and the structlog config kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from tests.tracing.receiver import Receiver


@pytest.fixture(autouse=True)
def keep_structlog_config() -> Iterator[None]:
    """A traced hub adds its log processor to the process-wide structlog config."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()
