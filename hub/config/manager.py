"""Loading, reloading and watching config; swapping snapshots atomically.

A bad reload is logged and counted, and the last good snapshot keeps serving. Reloads come
from SIGHUP or a change under a watched path (a Kubernetes ConfigMap directory updated by
its ``..data`` symlink swap included).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from mixerhub.cache import DecisionCache
from mixerhub.config.files import ConfigError
from mixerhub.config.loader import DEFAULT_NAMESPACE, load_config
from mixerhub.config.snapshot import Snapshot, start_snapshot, stop_adapters
from mixerhub.dispatch import PolicyEngine
from mixerhub.logs import get_logger
from mixerhub.metrics import Metrics
from mixerhub.plugins import Plugins

#: How long the replaced snapshot's adapters keep running for requests still using them.
RETIRE_AFTER_SECONDS = 2.0


class ConfigManager:
    def __init__(self, paths: Sequence[str], plugins: Plugins, metrics: Metrics,
                 on_swap: Callable[[PolicyEngine], None],
                 default_namespace: str = DEFAULT_NAMESPACE, cache_size: int = 10_000) -> None:
        self.paths = list(paths)
        self.plugins = plugins
        self.metrics = metrics
        self.on_swap = on_swap
        self.default_namespace = default_namespace
        self.cache_size = cache_size
        self.snapshot: Snapshot | None = None
        self.log = get_logger("mixerhub.config")
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def load(self) -> Snapshot:
        """The first load: errors propagate (the hub does not start on a broken config)."""
        async with self._lock:
            snapshot = await self._build()
            self._swap(snapshot)
            return snapshot

    async def reload(self, reason: str) -> bool:
        async with self._lock:
            try:
                snapshot = await self._build()
            except ConfigError as exc:
                self.metrics.config_reloads.labels("error").inc()
                current = self.snapshot.version if self.snapshot else None
                self.log.error("config reload failed; the running config stays",
                               reason=reason, running_version=current,
                               errors=str(exc).splitlines())
                return False
            self._swap(snapshot)
            return True

    async def _build(self) -> Snapshot:
        config = load_config(self.paths, self.plugins, self.default_namespace)
        return await start_snapshot(config, self.metrics)

    def _swap(self, snapshot: Snapshot) -> None:
        old = self.snapshot
        cache = DecisionCache(self.cache_size) if self.cache_size > 0 else None
        engine = PolicyEngine(snapshot, self.metrics, get_logger("mixerhub.dispatch"), cache)
        self.snapshot = snapshot
        self.on_swap(engine)
        self.metrics.config_reloads.labels("ok").inc()
        c = snapshot.config
        self.log.info("config loaded", version=snapshot.version, rules=len(c.rules),
                      handlers=len(c.handlers), instances=len(c.instances))
        if old is not None:
            task = asyncio.get_running_loop().create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, old: Snapshot) -> None:
        await asyncio.sleep(RETIRE_AFTER_SECONDS)
        await stop_adapters(old.adapters)

    async def watch(self, stop: asyncio.Event, debounce_ms: int = 200) -> None:
        """Reload on changes under the config paths until ``stop`` is set."""
        from watchfiles import awatch

        roots, dirs, files = _watch_targets(self.paths)
        async for changes in awatch(*roots, stop_event=stop, debounce=debounce_ms,
                                    step=50, recursive=True):
            if any(_relevant(Path(p), dirs, files) for _, p in changes):
                await self.reload("file change")

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        if self.snapshot is not None:
            await stop_adapters(self.snapshot.adapters)


def _watch_targets(paths: Sequence[str]) -> tuple[list[str], set[Path], set[Path]]:
    """Directories to watch, and the watched directories and files themselves."""
    dirs: set[Path] = set()
    files: set[Path] = set()
    for raw in paths:
        path = Path(raw).absolute()
        (dirs if path.is_dir() else files).add(path)
    roots = sorted({str(d) for d in dirs} | {str(f.parent) for f in files})
    return roots, dirs, files


def _relevant(changed: Path, dirs: set[Path], files: set[Path]) -> bool:
    """Anything under a watched directory; a watched file itself; or Kubernetes' hidden
    ``..data`` / ``..2024_…`` entries beside a watched file (its symlink swap)."""
    if any(d == changed or d in changed.parents for d in dirs):
        return True
    for f in files:
        if changed == f:
            return True
        if f.parent in changed.parents:
            first = changed.relative_to(f.parent).parts[0]
            if first.startswith(".."):
                return True
    return False
