"""A test kit for adapter authors: a policy built from YAML text with your plugin
registered, run on the hub's real engine, with every adapter call recorded.

    from mixerhub.testkit import harness

    async def test_denies_unknown_callers() -> None:
        async with harness(CONFIG, plugins=[my_plugin]) as hub:
            run = await hub.check({"source.uid": "kubernetes://ratings-v1"})
        assert run.verdict.code == 7
        assert run.instances("trusted")[0].value == "kubernetes://ratings-v1"

The engine is the one ``mixerhub serve`` and ``mixerhub test`` use: config loaded and
validated by :func:`mixerhub.config.loader.load_config`, adapters started by
:func:`mixerhub.config.snapshot.start_snapshot`, checks and reports decided by
:class:`mixerhub.dispatch.PolicyEngine`. Attributes are given in the JSON form of
docs/json.md. Tests that are not ``async`` use :class:`SyncHarness`; with pytest,
``pytest_plugins = ["mixerhub.testkit"]`` adds the ``mixerhub_harness`` fixture
(docs/plugins.md, "Testing a plugin").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mixerhub.attributes.bag import AttributeBag
from mixerhub.config.errors import ConfigErrors
from mixerhub.config.loader import DEFAULT_NAMESPACE, LoadedConfig, load_config
from mixerhub.config.snapshot import Snapshot, start_snapshot, stop_adapters
from mixerhub.dispatch import PolicyEngine
from mixerhub.jsonform import values_from_json
from mixerhub.logs import get_logger
from mixerhub.metrics import Metrics
from mixerhub.plugins import ENTRY_POINT_GROUP, Plugins, load_plugins
from mixerhub.verdict import QuotaGrant, QuotaRequest, Verdict

__all__ = ["Call", "CheckRun", "Harness", "ManualClock", "ReportRun", "SyncHarness",
           "harness", "load_test_config", "plugins_with"]

#: What a config may be: YAML text, or paths of files and folders (as ``--config`` takes).
ConfigSource = str | os.PathLike[str] | Sequence[os.PathLike[str]]
CONFIG_FILE = "policy.yaml"


class ManualClock:
    """A clock a test moves by hand (``clock.advance(5)``), so windows pass without sleeping.
    Pass it as ``harness(..., clock=clock)``; adapters read it through ``env.clock``."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.start = start or dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        self.seconds = 0.0

    def advance(self, seconds: float) -> None:
        self.seconds += seconds

    def monotonic(self) -> float:
        return 1000.0 + self.seconds

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.seconds)


@dataclasses.dataclass(frozen=True)
class Call:
    """One adapter call: which handler, which method, the instances it got, and what it
    returned (or raised)."""

    handler: str  # the handler's full name: trusted.handler.istio-system
    method: str  # "check", "quota" or "report"
    instances: tuple[Any, ...]  # one for check and quota, the batch for report
    result: Any = None  # CheckResult, QuotaResult, None (report) or the exception raised

    def is_for(self, handler: str | None) -> bool:
        """True for ``handler`` given as its full name or its short name (``trusted``)."""
        return handler is None or handler in (self.handler, self.handler.split(".")[0])


@dataclasses.dataclass(frozen=True)
class _Run:
    calls: tuple[Call, ...]

    def instances(self, handler: str | None = None) -> list[Any]:
        """The instances handed to ``handler`` (full or short name; None: any), in order."""
        return [i for c in self.calls if c.is_for(handler) for i in c.instances]


@dataclasses.dataclass(frozen=True)
class CheckRun(_Run):
    """A check's outcome and the adapter calls it made (none when answered from the
    decision cache)."""

    verdict: Verdict
    quotas: Mapping[str, QuotaGrant]


@dataclasses.dataclass(frozen=True)
class ReportRun(_Run):
    """The ``report()`` calls one report made, a batch per handler."""


class _Recorder:
    """Stands in for one started adapter: records each call, then makes it."""

    def __init__(self, handler: str, adapter: Any, calls: list[Call]) -> None:
        self._handler, self._adapter, self._calls = handler, adapter, calls

    def __getattr__(self, name: str) -> Any:  # status, fail_closed, bind, params …
        return getattr(self._adapter, name)

    async def check(self, instance: Any) -> Any:
        return await self._record("check", (instance,), self._adapter.check(instance))

    async def quota(self, instance: Any, args: Any) -> Any:
        return await self._record("quota", (instance,), self._adapter.quota(instance, args))

    async def report(self, instances: Sequence[Any]) -> Any:
        return await self._record("report", tuple(instances), self._adapter.report(instances))

    async def _record(self, method: str, instances: tuple[Any, ...], call: Any) -> Any:
        try:
            result = await call
        except Exception as exc:
            self._calls.append(Call(self._handler, method, instances, exc))
            raise
        self._calls.append(Call(self._handler, method, instances, result))
        return result


def plugins_with(plugins: Iterable[Any] = (), entry_points: bool = True) -> Plugins:
    """The hub's plugins plus ``plugins`` (modules or objects holding ``@hookimpl``s).
    A plugin whose module is already installed under the ``mixerhub`` entry-point group is
    not registered twice, so the same test passes before and after ``pip install -e .``."""
    installed = {ep.module for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
                 } if entry_points else set()
    extra = [p for p in plugins if getattr(p, "__name__", None) not in installed]
    return load_plugins(extra=extra, entry_points=entry_points)


def load_test_config(config: ConfigSource, plugins: Plugins,
                     default_namespace: str = DEFAULT_NAMESPACE) -> LoadedConfig:
    """Load and validate ``config`` as ``mixerhub validate`` would. YAML text is read as a
    file named ``policy.yaml``: errors read ``policy.yaml:LINE: …``, whatever the
    temporary folder."""
    if not isinstance(config, str):
        paths = [config] if isinstance(config, os.PathLike) else list(config)
        return load_config([Path(p) for p in paths], plugins, default_namespace)
    with tempfile.TemporaryDirectory(prefix="mixerhub-testkit-") as folder:
        path = Path(folder) / CONFIG_FILE
        path.write_text(config, encoding="utf-8")
        try:
            return load_config([path], plugins, default_namespace)
        except ConfigErrors as exc:
            raise ConfigErrors([e.replace(f"{folder}{os.sep}", "") for e in exc.errors]
                               ) from None


class Harness:
    """A started policy: the engine, its adapters and a record of their calls."""

    def __init__(self, config: LoadedConfig, snapshot: Snapshot, adapters: dict[str, Any],
                 metrics: Metrics, cache_size: int = 0) -> None:
        from mixerhub.cache import DecisionCache

        self.config = config
        self.metrics = metrics
        self.calls: list[Call] = []
        self._adapters = adapters
        recording = {n: _Recorder(n, a, self.calls) for n, a in adapters.items()}
        self.engine = PolicyEngine(dataclasses.replace(snapshot, adapters=recording), metrics,
                                   get_logger("mixerhub.testkit"),
                                   DecisionCache(cache_size) if cache_size > 0 else None)

    @classmethod
    async def start(cls, config: ConfigSource, *, plugins: Iterable[Any] = (),
                    entry_points: bool = True, default_namespace: str = DEFAULT_NAMESPACE,
                    clock: Any = None, cache_size: int = 0) -> Harness:
        """Load ``config`` (YAML text or paths), start its handlers as the hub does."""
        loaded = load_test_config(config, plugins_with(plugins, entry_points),
                                  default_namespace)
        metrics = Metrics()
        snapshot = await start_snapshot(loaded, metrics, clock)
        return cls(loaded, snapshot, snapshot.adapters, metrics, cache_size)

    async def close(self) -> None:
        """Stop the handlers, as the hub does when a config is replaced."""
        await stop_adapters(self._adapters)

    def adapter(self, handler: str) -> Any:
        """The started adapter object of ``handler`` (full or short name)."""
        for name, adapter in self._adapters.items():
            if handler in (name, name.split(".")[0]):
                return adapter
        raise KeyError(f"no handler {handler!r} (handlers: {', '.join(self._adapters)})")

    def bag(self, attributes: Mapping[str, Any]) -> AttributeBag:
        """A bag from attributes in the JSON form, typed by the config's manifest."""
        return AttributeBag(values_from_json(attributes, self.config.manifest))

    async def check(self, attributes: Mapping[str, Any],
                    quotas: Mapping[str, int | QuotaRequest] | None = None,
                    dedup_id: str = "") -> CheckRun:
        """Decide one check. ``quotas`` maps a quota's short name to an amount (or a
        :class:`~mixerhub.verdict.QuotaRequest`); none asked means none allocated."""
        requests = {name: q if isinstance(q, QuotaRequest) else QuotaRequest(q)
                    for name, q in (quotas or {}).items()}
        start = len(self.calls)
        outcome = await self.engine.check(self.bag(attributes), requests, dedup_id)
        return CheckRun(tuple(self.calls[start:]), outcome.verdict, outcome.quotas)

    async def report(self, records: Sequence[Mapping[str, Any]]) -> ReportRun:
        """Take one report of these attribute records; returns the batches delivered."""
        start = len(self.calls)
        await self.engine.report([self.bag(r) for r in records])
        return ReportRun(tuple(self.calls[start:]))

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the hub's metrics, 0.0 when never counted:
        ``metric("mixerhub_rule_failures_total", rule="r.istio-system", policy="open")``."""
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@contextlib.asynccontextmanager
async def harness(config: ConfigSource, *, plugins: Iterable[Any] = (),
                  entry_points: bool = True, default_namespace: str = DEFAULT_NAMESPACE,
                  clock: Any = None, cache_size: int = 0) -> AsyncIterator[Harness]:
    """A started :class:`Harness` for the ``async with`` block; handlers stopped after.

    ``plugins``: modules (or objects) with ``@hookimpl``s, registered beside the installed
    ones; ``entry_points=False`` leaves the installed ones out (the built-in templates are
    then missing too). ``cache_size`` > 0 turns the hub's decision cache on (off by
    default, so every check is evaluated)."""
    started = await Harness.start(config, plugins=plugins, entry_points=entry_points,
                                  default_namespace=default_namespace, clock=clock,
                                  cache_size=cache_size)
    try:
        yield started
    finally:
        await started.close()


class SyncHarness:
    """:class:`Harness` for tests that are not ``async``: it runs on an event loop of its
    own. Use it as ``with SyncHarness(CONFIG, plugins=[...]) as hub: hub.check({...})``.
    (Inside an ``async`` test, use :func:`harness`: one thread runs one loop at a time.)"""

    def __init__(self, config: ConfigSource, **options: Any) -> None:
        self._runner = asyncio.Runner()
        self._closed = False
        try:
            self.harness = self._runner.run(Harness.start(config, **options))
        except BaseException:
            self._runner.close()
            raise

    def __enter__(self) -> SyncHarness:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.run(self.harness.close())
        finally:
            self._runner.close()

    def check(self, attributes: Mapping[str, Any],
              quotas: Mapping[str, int | QuotaRequest] | None = None,
              dedup_id: str = "") -> CheckRun:
        return self._runner.run(self.harness.check(attributes, quotas, dedup_id))

    def report(self, records: Sequence[Mapping[str, Any]]) -> ReportRun:
        return self._runner.run(self.harness.report(records))

    def adapter(self, handler: str) -> Any:
        return self.harness.adapter(handler)

    def metric(self, name: str, **labels: str) -> float:
        return self.harness.metric(name, **labels)


def _fixtures() -> Any:
    """The pytest fixture, defined only where pytest is installed (the kit itself does not
    need it)."""
    try:
        import pytest
    except ImportError:  # pragma: no cover - the kit works without pytest
        return None

    @pytest.fixture
    def mixerhub_harness() -> Iterator[Any]:
        """A factory: ``mixerhub_harness(CONFIG, plugins=[...])`` returns a started
        :class:`SyncHarness`; every one made is closed when the test ends."""
        made: list[SyncHarness] = []

        def make(config: ConfigSource, **options: Any) -> SyncHarness:
            made.append(SyncHarness(config, **options))
            return made[-1]

        yield make
        for started in made:
            started.close()

    return mixerhub_harness


mixerhub_harness = _fixtures()
