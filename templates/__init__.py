"""Instance templates: the typed shapes rules build from attributes for adapters.

A template names its variety (CHECK, QUOTA, REPORT) and its fields. Each field of an
instance's ``params`` is an expression (a map field is a map of expressions; a struct field
holds fields of its own). The hub compiles them at load and evaluates them per request into
an :class:`~mixerhub.templates.instance.Instance` that adapters read by attribute.
"""

from __future__ import annotations

from mixerhub.templates.model import Field, Template, Variety
from mixerhub.templates.instance import Instance

__all__ = ["Field", "Instance", "Template", "Variety"]
