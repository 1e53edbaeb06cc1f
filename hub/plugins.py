"""Plugin discovery: a pluggy manager over the ``mixerhub`` entry-point group, and the
registries its hooks fill. Built-in adapters and templates register the same way a
third-party package does (see pyproject's ``[project.entry-points.mixerhub]``)."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterable
from typing import Any

import pluggy

from mixerhub import hookspecs
from mixerhub.errors import MixerhubError
from mixerhub.templates.model import Template

ENTRY_POINT_GROUP = "mixerhub"


class PluginError(MixerhubError):
    code = "plugin_error"


class AdapterRegistry:
    """Adapter classes by ``compiledAdapter`` name."""

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}

    def register(self, cls: type) -> None:
        name = getattr(cls, "name", "")
        if not name or not isinstance(name, str):
            raise PluginError(f"{cls.__module__}.{cls.__qualname__}: adapter has no name")
        if not hasattr(cls, "Params"):
            raise PluginError(f"adapter {name!r}: no Params model")
        other = self._classes.get(name)
        if other is not None and other is not cls:
            raise PluginError(f"adapter {name!r} registered twice: by {other.__module__} "
                              f"and by {cls.__module__}")
        self._classes[name] = cls

    def get(self, name: str) -> type | None:
        return self._classes.get(name)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def items(self) -> list[tuple[str, type]]:
        return sorted(self._classes.items())


class TemplateRegistry:
    def __init__(self) -> None:
        self._templates: dict[str, Template] = {}

    def register(self, template: Template) -> None:
        other = self._templates.get(template.name)
        if other is not None and other != template:
            raise PluginError(f"template {template.name!r} registered twice")
        self._templates[template.name] = template

    def get(self, name: str) -> Template | None:
        return self._templates.get(name)

    def names(self) -> list[str]:
        return sorted(self._templates)


@dataclasses.dataclass
class Plugins:
    manager: pluggy.PluginManager
    adapters: AdapterRegistry
    templates: TemplateRegistry

    def describe(self) -> list[dict[str, Any]]:
        """Loaded plugins with their distributions (for /debug/plugins)."""
        dists = {id(p): d for p, d in self.manager.list_plugin_distinfo()}
        out = []
        for name, plugin in self.manager.list_name_plugin():
            dist = dists.get(id(plugin))
            out.append({"name": name, "module": getattr(plugin, "__name__", repr(plugin)),
                        "distribution": dist.project_name if dist else None,
                        "version": dist.version if dist else None})
        return sorted(out, key=lambda p: p["name"])


def get_plugin_manager(extra: Iterable[Any] = (), entry_points: bool = True
                       ) -> pluggy.PluginManager:
    """A fresh manager: hook specs, entry-point plugins, then ``extra`` plugin objects."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    if entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra:
        pm.register(plugin)
    pm.check_pending()
    if os.environ.get("MIXERHUB_TRACE_HOOKS") == "1":
        pm.trace.root.setwriter(lambda text: sys.stderr.write(text))
        pm.enable_tracing()
    return pm


def load_plugins(extra: Iterable[Any] = (), entry_points: bool = True) -> Plugins:
    """Discover plugins and fill the registries (templates first)."""
    pm = get_plugin_manager(extra, entry_points)
    templates, adapters = TemplateRegistry(), AdapterRegistry()
    pm.hook.mixerhub_register_templates(registry=templates)
    pm.hook.mixerhub_register_adapters(registry=adapters)
    return Plugins(pm, adapters, templates)
