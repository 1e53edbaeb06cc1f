"""mixerhub: a policy and telemetry hub for service meshes, speaking Mixer v1."""

from __future__ import annotations

import pluggy

__all__ = ["__version__", "hookimpl", "hookspec"]

__version__ = "0.1.0"

#: Marker for plugin functions: ``@hookimpl def mixerhub_register_adapters(registry): ...``
hookimpl = pluggy.HookimplMarker("mixerhub")
#: Marker used by :mod:`mixerhub.hookspecs` to declare hooks.
hookspec = pluggy.HookspecMarker("mixerhub")
