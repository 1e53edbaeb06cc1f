"""Every hook mixerhub calls, in one place. Plugins implement them with
``from mixerhub import hookimpl``.

Hooks run at start-up only (discovery); requests never go through pluggy: the compiled
snapshot calls adapter objects directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mixerhub import hookspec

if TYPE_CHECKING:
    from mixerhub.plugins import AdapterRegistry, TemplateRegistry


@hookspec
def mixerhub_register_adapters(registry: AdapterRegistry) -> None:
    """Register adapter classes: ``registry.register(MyAdapter)``.

    Called once per plugin manager, when the hub (or ``mixerhub validate``) starts.
    Not ``firstresult``: every plugin registers its own. Returns nothing; must not be async.
    Registering a name twice is an error naming both plugins.
    """


@hookspec
def mixerhub_register_templates(registry: TemplateRegistry) -> None:
    """Register instance templates (``mixerhub.templates.Template`` objects).

    Called once per plugin manager, before adapters are registered. Not ``firstresult``;
    returns nothing; must not be async.
    """
