"""A snapshot: a loaded config with its adapters built and started. Immutable once built;
the hub swaps whole snapshots and stops the old one's adapters."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from mixerhub.adapter import AdapterEnv, Clock, SystemClock
from mixerhub.config.errors import ConfigErrors
from mixerhub.config.loader import LoadedConfig, RuleConfig
from mixerhub.logs import get_logger
from mixerhub.metrics import Metrics
from mixerhub.templates.model import Variety

_versions = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    version: int
    config: LoadedConfig
    adapters: dict[str, Any]  # handler full name → started adapter object

    def rules(self, variety: Variety) -> tuple[RuleConfig, ...]:
        """Rules with an instance of this variety (CHECK also: rules with header ops)."""
        return tuple(r for r in self.config.rules
                     if any(i.template.variety is variety for a in r.actions for i in a.instances)
                     or (variety is Variety.CHECK and (r.request_ops or r.response_ops)))

    def describe(self) -> dict[str, Any]:
        """The active config, for /debug/config."""
        c = self.config
        return {
            "version": self.version, "files": list(c.files), "documents": c.documents,
            "default_namespace": c.default_namespace,
            "handlers": [{"name": h.name, "adapter": h.adapter.name,  # type: ignore[attr-defined]
                          "status": getattr(self.adapters.get(h.name), "status", None) and
                          self.adapters[h.name].status.value, "source": h.source}
                         for h in c.handlers.values()],
            "instances": [{"name": i.name, "template": i.template.name}
                          for i in c.instances.values()],
            "rules": [{"name": r.name, "match": r.match.text if r.match else "",
                       "actions": [{"handler": a.handler.name,
                                    "instances": [i.name for i in a.instances]}
                                   for a in r.actions],
                       "failPolicy": r.fail_policy, "shadow": r.shadow, "source": r.source}
                      for r in c.rules],
        }


async def start_snapshot(config: LoadedConfig, metrics: Metrics,
                         clock: Clock | None = None) -> Snapshot:
    """Build and start every handler's adapter; on a start failure stop those started."""
    adapters: dict[str, Any] = {}
    errors = []
    for handler in config.handlers.values():
        env = AdapterEnv(handler=handler.name, registry=metrics.registry,
                         logger=get_logger(f"mixerhub.adapter.{handler.adapter.name}",  # type: ignore[attr-defined]
                                           handler=handler.name),
                         clock=clock or SystemClock(),
                         on_error=metrics.adapter_errors.labels(handler.name).inc)
        try:
            adapter = handler.adapter(handler.params, env)
            await adapter.start()
        except Exception as exc:  # noqa: BLE001 - reported as a config error, never swallowed
            errors.append(f"{handler.source}: handler/{handler.short}: failed to start: {exc}")
            continue
        adapters[handler.name] = adapter
    if errors:
        await stop_adapters(adapters)
        raise ConfigErrors(errors)
    return Snapshot(next(_versions), config, adapters)


async def stop_adapters(adapters: dict[str, Any]) -> None:
    log = get_logger("mixerhub.snapshot")
    for name, adapter in adapters.items():
        try:
            await adapter.stop()
        except Exception:  # noqa: BLE001 - logged; stopping the rest matters more
            log.exception("adapter failed to stop", handler=name)
