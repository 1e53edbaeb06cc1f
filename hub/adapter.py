"""What an adapter is: the async protocol the dispatcher calls, and what the hub gives it.

An adapter class declares its ``name`` (the ``compiledAdapter`` of a handler), its
``Params`` (a pydantic model of the handler's ``params``, Istio 1.4 names) and the
templates it accepts. The hub builds one adapter object per handler, with an
:class:`AdapterEnv`, calls ``start()`` before it serves and ``stop()`` when the snapshot is
replaced. Every method is a coroutine and must never block the event loop.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict

from mixerhub.verdict import DEFAULT_VALID_DURATION, DEFAULT_VALID_USE_COUNT


class Status(enum.Enum):
    """An adapter's health, shown per handler on /debug/config."""

    NOT_READY = "NOT_READY"
    OK = "OK"
    ERROR = "ERROR"


class Params(BaseModel):
    """Base for adapter params models: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> dt.datetime: ...


class SystemClock:
    """The real clock. Tests inject their own so quota windows move without sleeping."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class AdapterEnv:
    """What the hub hands each adapter object."""

    handler: str  # the handler's full name, name.kind.namespace: "denyall.handler.istio-system"
    registry: CollectorRegistry  # the hub's Prometheus registry
    logger: Any  # a structlog logger bound to the handler
    clock: Clock = dataclasses.field(default_factory=SystemClock)
    on_error: Callable[[], None] = lambda: None  # counts an adapter error


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """An adapter's answer to a CHECK instance. ``code`` is a google.rpc.Code (0 = OK)."""

    code: int = 0
    message: str = ""
    valid_duration: dt.timedelta = DEFAULT_VALID_DURATION
    valid_use_count: int = DEFAULT_VALID_USE_COUNT


@dataclasses.dataclass(frozen=True, slots=True)
class QuotaArgs:
    """One allocation: how much, whether partial grants are fine, and the retry id."""

    amount: int
    best_effort: bool = False
    dedup_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class QuotaResult:
    """An allocation's outcome. Adapters that know their limit also say ``limit`` (the
    maximum amount of the window), ``remaining`` (what is left after this grant) and
    ``reset`` (time until more becomes available); callers use them for rate-limit
    headers and Envoy's rate-limit replies."""

    granted: int
    valid_duration: dt.timedelta = dt.timedelta(0)
    limit: int | None = None
    remaining: int | None = None
    reset: dt.timedelta | None = None


class BackendError(Exception):
    """Raised by an adapter whose backend (Redis, OPA, a list provider) failed; the rule's
    fail policy decides what the caller sees."""


@runtime_checkable
class Adapter(Protocol):
    """The protocol every adapter object satisfies (only the varieties it supports)."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    templates: ClassVar[frozenset[str]]
    status: Status

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class CheckAdapter(Adapter, Protocol):
    async def check(self, instance: Any) -> CheckResult: ...


class QuotaAdapter(Adapter, Protocol):
    async def quota(self, instance: Any, args: QuotaArgs) -> QuotaResult: ...


class ReportAdapter(Adapter, Protocol):
    async def report(self, instances: Sequence[Any]) -> None: ...


class BaseAdapter:
    """Convenience base: stores params and env, no-op lifecycle, status OK after start."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = Params
    templates: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: Any, env: AdapterEnv) -> None:
        self.params = params
        self.env = env
        self.status = Status.NOT_READY

    async def start(self) -> None:
        self.status = Status.OK

    async def stop(self) -> None:
        self.status = Status.NOT_READY
