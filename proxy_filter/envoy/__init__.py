"""The Lua HTTP filter that makes stock Envoy a caching Mixer client (``mixerhub.lua``),
and the code that configures it for ``mixerhub envoy-config``."""

from __future__ import annotations

from importlib import resources


def lua_source() -> str:
    """The filter's Lua code, without its configuration table."""
    return resources.files(__package__).joinpath("mixerhub.lua").read_text(encoding="utf-8")
