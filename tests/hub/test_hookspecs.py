"""The hook catalogue is documented: prefixed names, docstrings that say when a hook is
called and whether it is ``firstresult``, and a mention of every hook in docs/plugins.md."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy
import pytest

from mixerhub import hookspecs
from mixerhub.plugins import ENTRY_POINT_GROUP, get_plugin_manager

PLUGINS_DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
SPEC_ATTR = f"{ENTRY_POINT_GROUP}_spec"  # what pluggy's HookspecMarker sets on a function
NEGATED_FIRSTRESULT = re.compile(r"\bnot\s+`*firstresult\b", re.IGNORECASE)


def _specs() -> dict[str, Callable[..., Any]]:
    return {name: func for name, func in vars(hookspecs).items()
            if callable(func) and hasattr(func, SPEC_ATTR)}


SPECS = _specs()
NAMES = sorted(SPECS)


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    return [p for p in parts if re.search(r"[A-Za-z]", p)]


def test_there_are_hooks_and_pluggy_sees_exactly_them() -> None:
    assert NAMES, "mixerhub.hookspecs declares no hooks"
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    declared = {name for name in vars(pm.hook) if not name.startswith("_")}
    assert declared == set(NAMES)


def test_the_plugin_manager_factory_loads_the_catalogue() -> None:
    pm = get_plugin_manager(entry_points=False)
    for name in NAMES:
        assert getattr(pm.hook, name).spec is not None, name


def test_no_unmarked_hook_lookalikes() -> None:
    """A ``mixerhub_*`` function without ``@hookspec`` would silently be no hook at all."""
    unmarked = [name for name, obj in vars(hookspecs).items()
                if name.startswith("mixerhub_") and not hasattr(obj, SPEC_ATTR)]
    assert unmarked == []


@pytest.mark.parametrize("name", NAMES)
def test_name_is_prefixed(name: str) -> None:
    assert name.startswith("mixerhub_")
    assert SPECS[name].__name__ == name


@pytest.mark.parametrize("name", NAMES)
def test_docstring_has_at_least_two_sentences(name: str) -> None:
    doc = inspect.getdoc(SPECS[name]) or ""
    assert len(_sentences(doc)) >= 2, f"{name}: docstring too short: {doc!r}"


@pytest.mark.parametrize("name", NAMES)
def test_docstring_says_when_it_is_called(name: str) -> None:
    doc = inspect.getdoc(SPECS[name]) or ""
    assert re.search(r"\bcalled\b", doc, re.IGNORECASE), f"{name}: does not say when it is called"


@pytest.mark.parametrize("name", NAMES)
def test_docstring_states_firstresult_truthfully(name: str) -> None:
    doc = inspect.getdoc(SPECS[name]) or ""
    firstresult = bool(getattr(SPECS[name], SPEC_ATTR).get("firstresult"))
    assert "firstresult" in doc.lower(), f"{name}: does not say whether it is firstresult"
    negated = bool(NEGATED_FIRSTRESULT.search(doc))
    assert negated != firstresult, (
        f"{name}: the spec has firstresult={firstresult} but the docstring says "
        f"{'not ' if negated else ''}firstresult")


@pytest.mark.parametrize("name", NAMES)
def test_documented_for_plugin_authors(name: str) -> None:
    assert name in PLUGINS_DOC.read_text(encoding="utf-8"), f"{name} is not in docs/plugins.md"
