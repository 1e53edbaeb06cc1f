"""Registers the built-in templates (entry point ``templates`` of group ``mixerhub``)."""

from __future__ import annotations

from mixerhub import hookimpl
from mixerhub.plugins import TemplateRegistry
from mixerhub.templates.builtin import BUILTIN_TEMPLATES


@hookimpl
def mixerhub_register_templates(registry: TemplateRegistry) -> None:
    for template in BUILTIN_TEMPLATES:
        registry.register(template)
