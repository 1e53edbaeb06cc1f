"""The generated reference pages: ``docs/reference/config.md`` from the pydantic models of the
config envelope and of every built-in adapter's ``Params``, and ``docs/reference/cli.md``
from ``mixerhub.cli.build_parser()``.

``python -m mixerhub.docgen --write`` rewrites both; ``--check`` exits 1 when the files on
disk differ from what the code says (CI runs the same comparison in tests/docs/). The output
is deterministic: no environment, terminal width or installed third-party plugin changes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import enum
import inspect
import json
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import annotated_types
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo

from mixerhub.config import models
from mixerhub.templates.model import TEXTUAL
from mixerhub.templates.model import Field as TemplateField
from mixerhub.templates.model import Template

DOCS = Path(__file__).resolve().parents[1] / "docs"
CONFIG_PAGE = Path("reference") / "config.md"
CLI_PAGE = Path("reference") / "cli.md"
BUILTIN_PREFIX = "mixerhub."
REGENERATE = "python -m mixerhub.docgen --write"
_LONG_DEFAULT = 60


def _banner(source: str) -> str:
    return (f"<!-- Generated from {source} by `{REGENERATE}`. Do not edit by hand: change the "
            "code, then regenerate; tests/docs/ fails while this page and the code differ. -->")


# ---- markdown helpers --------------------------------------------------------------------

def anchor(heading: str) -> str:
    """The id mkdocs (and GitHub) give a heading: lower case, punctuation dropped."""
    text = re.sub(r"[^\w\s-]", "", heading).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def cell(text: str) -> str:
    """Text safe inside a table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|") or "—"


def prose(text: str) -> str:
    """Plain text from code (help strings, descriptions) that Markdown must not read as
    emphasis or HTML."""
    return text.replace("*", "\\*").replace("<", "&lt;")


def code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


# ---- pydantic models -> tables -----------------------------------------------------------

@dataclasses.dataclass
class ModelSection:
    """One model rendered under a heading; nested models get sections of their own."""

    heading: str
    model: type[BaseModel]
    intro: str = ""


class ModelNames:
    """Headings (and so anchors) of the models a page documents, unique on the page."""

    def __init__(self) -> None:
        self.headings: dict[type[BaseModel], str] = {}

    def add(self, model: type[BaseModel], heading: str) -> None:
        if heading in self.headings.values():
            raise ValueError(f"two models under the heading {heading!r}")
        self.headings.setdefault(model, heading)

    def link(self, model: type[BaseModel]) -> str:
        heading = self.headings.get(model)
        return f"[{model.__name__}](#{anchor(heading)})" if heading else model.__name__


def yaml_name(name: str, field: FieldInfo) -> tuple[str, list[str]]:
    """The key users write (alias, else the first validation alias) and other keys
    accepted for the same field."""
    if field.alias:
        return field.alias, []
    if isinstance(field.validation_alias, AliasChoices):
        names = [c for c in field.validation_alias.choices if isinstance(c, str)]
        return names[0], [n for n in names[1:] if n != names[0]]
    if isinstance(field.validation_alias, str):
        return field.validation_alias, []
    return name, []


def type_text(tp: Any, names: ModelNames) -> str:
    """A reader's name for an annotation: "list of string", "duration", a model link."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return type_text(args[0], names)
    if origin in (typing.Union, types.UnionType):
        kept = [type_text(a, names) for a in args if a is not type(None)]
        return " or ".join(kept) + (" (or null)" if len(kept) < len(args) else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(code(str(a)) for a in args)
    if origin in (list, tuple, set, frozenset, Sequence):
        return "list of " + type_text(args[0], names) if args else "list"
    if origin is dict:
        return f"map: {type_text(args[0], names)} → {type_text(args[1], names)}"
    return _plain_type(tp, names)


def _plain_type(tp: Any, names: ModelNames) -> str:
    simple = {str: "string", int: "integer", float: "number", bool: "boolean",
              dt.timedelta: "duration", SecretStr: "string (secret)", typing.Any: "any",
              type(None): "null"}
    if tp in simple:
        return simple[tp]
    if inspect.isclass(tp) and issubclass(tp, BaseModel):
        return "object: " + names.link(tp)
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(code(str(m.value)) for m in tp)
    return getattr(tp, "__name__", str(tp))


def nested_models(tp: Any) -> Iterator[type[BaseModel]]:
    """Every model an annotation mentions, in order."""
    if inspect.isclass(tp) and issubclass(tp, BaseModel):
        yield tp
    for arg in typing.get_args(tp):
        yield from nested_models(arg)


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    text = json.dumps(_plain(value), ensure_ascii=False, sort_keys=True)
    if isinstance(value, str) and value:
        text = value
    if isinstance(value, (dict, BaseModel)) and len(text) > _LONG_DEFAULT:
        size = len(_plain(value))
        return f"{code('{…}')} ({size} entries)"
    return code(text)


def _plain(value: Any) -> Any:
    """A default as YAML would show it: tuples as lists, enums as their values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


_CONSTRAINTS: dict[type, Callable[[Any], str]] = {
    annotated_types.Ge: lambda c: f"≥ {c.ge}",
    annotated_types.Gt: lambda c: f"> {c.gt}",
    annotated_types.Le: lambda c: f"≤ {c.le}",
    annotated_types.Lt: lambda c: f"< {c.lt}",
    annotated_types.MultipleOf: lambda c: f"a multiple of {c.multiple_of}",
    annotated_types.MaxLen: lambda c: f"at most {c.max_length} long",
}


def constraints_text(field: FieldInfo) -> str:
    out = []
    for item in field.metadata:
        render = _CONSTRAINTS.get(type(item))
        if render is not None:
            out.append(render(item))
        elif isinstance(item, annotated_types.MinLen):
            out.append("not empty" if item.min_length == 1 else f"at least {item.min_length} long")
        elif getattr(item, "pattern", None):
            out.append(f"matches {code(item.pattern)}")
    return ", ".join(out)


def model_rows(model: type[BaseModel], names: ModelNames) -> list[list[str]]:
    rows = []
    for name, field in model.model_fields.items():
        key, others = yaml_name(name, field)
        description = field.description or ""
        if others:
            description += " (also accepted: " + ", ".join(code(o) for o in others) + ")"
        rows.append([code(key), type_text(field.annotation, names), default_text(field),
                     prose(description), constraints_text(field)])
    return rows


def model_doc(model: type[BaseModel]) -> str:
    """The model's own docstring (not one inherited from a base), first paragraph."""
    doc = model.__dict__.get("__doc__") or ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def collect(root: type[BaseModel], prefix: str, names: ModelNames,
            skip: frozenset[type[BaseModel]] = frozenset()) -> list[type[BaseModel]]:
    """``root`` and every model nested in it (depth first), each named on the page."""
    found: list[type[BaseModel]] = []

    def visit(model: type[BaseModel]) -> None:
        if model in found or model in skip:
            return
        found.append(model)
        names.add(model, f"{prefix}{model.__name__}")
        for field in model.model_fields.values():
            for inner in nested_models(field.annotation):
                visit(inner)

    visit(root)
    return found


FIELD_HEADER = ("field", "type", "default", "description", "constraints")


def render_models(models_: Sequence[type[BaseModel]], names: ModelNames, level: str,
                  ) -> list[str]:
    lines: list[str] = []
    for model in models_:
        lines += ["", f"{level} {names.headings[model]}", ""]
        if model_doc(model):
            lines += [prose(model_doc(model)), ""]
        lines += table(FIELD_HEADER, model_rows(model, names))
    return lines


# ---- the config page ---------------------------------------------------------------------

#: kind → the model of its ``spec`` and what it is for.
KINDS: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("handler", models.HandlerSpec, "a configured adapter"),
    ("instance", models.InstanceSpec, "what a rule hands an adapter, built by a template"),
    ("rule", models.RuleSpec, "when to send which instances to which handler"),
    ("attributemanifest", models.AttributeManifestSpec, "attributes and their types"),
    ("QuotaSpec", models.QuotaSpecSpec, "the quotas a client is charged"),
    ("QuotaSpecBinding", models.QuotaSpecBindingSpec, "which services a QuotaSpec applies to"),
)


def builtin_adapters(plugins: Any) -> list[tuple[str, type]]:
    """The adapters mixerhub itself registers (third-party plugins left out)."""
    return [(name, cls) for name, cls in plugins.adapters.items()
            if cls.__module__.startswith(BUILTIN_PREFIX)]


def builtin_templates(plugins: Any) -> list[Template]:
    found = [plugins.templates.get(n) for n in plugins.templates.names()]
    return [t for t in found if t is not None]


def config_page(plugins: Any) -> str:
    names = ModelNames()
    envelope = collect(models.Envelope, "", names)
    kind_models = [(kind, collect(spec, "", names, frozenset(envelope)), what)
                   for kind, spec, what in KINDS]
    lines = [_banner("the pydantic models in `hub/config/models.py` and each built-in "
                     "adapter's `Params`"), "", "# Configuration reference", "",
             "Every key the hub accepts, generated from the models that validate it. How the "
             "pieces fit together is explained in [Configuration](../configuration.md); "
             "expressions in [Expressions](../expressions.md). Unknown keys are errors "
             "everywhere except under `metadata`.", "", "## The envelope", "",
             "Every YAML document has these keys (a `kind: List` document holds others in "
             "`items`)."]
    lines += render_models(envelope, names, "###")
    lines += ["", "## Kinds", ""]
    lines += table(("kind", "spec", "what it is"),
                   [[code(k), names.link(ms[0]), what] for k, ms, what in kind_models])
    lines += ["", "A document whose `kind` is an adapter's name (Istio 1.4 style) is a "
              "handler whose `spec` is that adapter's params; one whose `kind` is a "
              "template's name is an instance whose `spec` is the template's fields."]
    for _kind, kind_ms, _what in kind_models:
        lines += render_models(kind_ms, names, "###")
    lines += _templates_section(builtin_templates(plugins))
    lines += _adapters_section(builtin_adapters(plugins))
    _unique_anchors(lines)
    return "\n".join(lines) + "\n"


def _unique_anchors(lines: Sequence[str]) -> None:
    """Links point at headings by anchor; two headings with one anchor would misdirect."""
    seen: set[str] = set()
    for line in lines:
        if line.startswith("#"):
            key = anchor(line.lstrip("#"))
            if key in seen:
                raise ValueError(f"two headings with the anchor {key!r}")
            seen.add(key)


def _templates_section(templates: Sequence[Template]) -> list[str]:
    lines = ["", "## Templates", "",
             "An instance's `params` hold one expression per field (a map field: one per "
             "key; a struct field: fields of its own). Field types are the static types "
             "the expression may have; \"text\" is STRING or a type carried as text "
             "(IP_ADDRESS, DNS_NAME, EMAIL_ADDRESS, URI), \"any\" accepts every type."]
    for template in templates:
        lines += ["", f"### {template.name}", "",
                  f"Variety: {template.variety.value}. {prose(template.description)}".strip(),
                  ""]
        rows = [row for f in template.fields for row in _template_rows(f, "")]
        lines += table(("field", "kind", "type", "description"), rows) if rows else \
            ["No fields."]
    return lines


def _types_text(allowed: frozenset[Any] | None) -> str:
    """A field's static types; the textual ones (STRING, IP_ADDRESS, URI …) read "text"."""
    if not allowed:
        return "any"
    words = ["text"] if TEXTUAL <= allowed else []
    rest = allowed - TEXTUAL if words else allowed
    return ", ".join(words + sorted(t.value for t in rest))


def _template_rows(field: TemplateField, prefix: str) -> list[list[str]]:
    kinds = {"expr": "expression", "map": "map of expressions", "struct": "struct"}
    allowed = "—" if field.kind == "struct" else _types_text(field.types)
    rows = [[code(prefix + field.name), kinds[field.kind], allowed, field.description]]
    for inner in field.fields:
        rows += _template_rows(inner, f"{prefix}{field.name}.")
    return rows


def _adapters_section(adapters: Sequence[tuple[str, type]]) -> list[str]:
    lines = ["", "## Adapters", "",
             "The `params` of a handler, per adapter (`compiledAdapter: NAME`, or "
             "`kind: NAME` in the Istio 1.4 style). Durations are numbers of seconds or "
             "text such as `500ms`, `5s`, `1m30s`. Each adapter's guide explains what the "
             "params do."]
    lines += [""] + table(("adapter", "templates", "guide"), [
        [f"[{name}](#{anchor(name)})", ", ".join(sorted(cls.templates)),  # type: ignore[attr-defined]
         f"[{name}](../adapters/{name}.md)"] for name, cls in adapters])
    for name, cls in adapters:
        names = ModelNames()
        params = cls.Params  # type: ignore[attr-defined]
        found = collect(params, f"{name}.", names)
        names.headings[params] = name
        lines += ["", f"### {name}", "",
                  f"Class `{cls.__module__}.{cls.__qualname__}`; params model "
                  f"`{params.__name__}`; guide: [{name}](../adapters/{name}.md)."]
        if model_doc(params):
            lines += ["", prose(model_doc(params))]
        lines += [""] + table(FIELD_HEADER, model_rows(params, names))
        lines += render_models(found[1:], names, "####")
    return lines


# ---- the CLI page ------------------------------------------------------------------------

def parser_without_environment() -> argparse.ArgumentParser:
    """``build_parser()`` as a clean environment sees it: defaults read from MIXERHUB_*
    variables are the built-in ones."""
    from mixerhub.cli import build_parser

    clean = {k: v for k, v in os.environ.items() if not k.startswith("MIXERHUB_")}
    with mock.patch.dict(os.environ, clean, clear=True):
        return build_parser()


def subcommands(parser: argparse.ArgumentParser, prefix: str = "mixerhub"
                ) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(full command, help, parser) for every subcommand, nested ones included."""
    out = []
    for action in parser._actions:  # noqa: SLF001 - argparse keeps no public list
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            helps = {a.dest: a.help or "" for a in action._choices_actions}  # noqa: SLF001
            for name, sub in action.choices.items():
                out.append((f"{prefix} {name}", helps.get(name, ""), sub))
                out += subcommands(sub, f"{prefix} {name}")
    return out


def _option_cell(action: argparse.Action) -> str:
    if not action.option_strings:
        return code(str(action.metavar or action.dest))
    return ", ".join(code(s) for s in action.option_strings)


def _argument_cell(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "flag"
    if action.choices:
        text = " \\| ".join(code(str(c)) for c in action.choices)
    else:
        text = code(str(action.metavar or action.dest.upper()))
    if action.nargs in ("+", "*"):
        text += " …"
    if isinstance(action, argparse._AppendAction):  # noqa: SLF001
        text += " (repeatable)"
    return text


def _default_cell(action: argparse.Action) -> str:
    default = action.default
    if action.required:
        return "required"
    if default is None or default is False or default == [] or action.nargs == 0 \
            or default == argparse.SUPPRESS:
        return ""
    return code(str(default))


def _help_text(action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {**vars(action), "prog": ""}
    return prose(text)


def _usage(command: str, parser: argparse.ArgumentParser) -> str:
    parts = [command]
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):  # noqa: SLF001
            continue
        if not action.option_strings:
            name = str(action.metavar or action.dest)
            parts.append(f"{name} [{name} ...]" if action.nargs == "+" else
                         f"[{name}]" if action.nargs == "?" else name)
    if any(a.option_strings and not isinstance(a, argparse._HelpAction)  # noqa: SLF001
           for a in parser._actions):  # noqa: SLF001
        parts.append("[OPTIONS]")
    if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):  # noqa: SLF001
        parts.append("COMMAND …")
    return " ".join(parts)


def cli_page() -> str:
    parser = parser_without_environment()
    commands = subcommands(parser)
    lines = [_banner("`mixerhub.cli.build_parser()`"), "", "# Command-line reference", "",
             "Every `mixerhub` command and option, generated from the parser itself. "
             "Defaults are those of a clean environment: where an option names an "
             "environment variable (`env MIXERHUB_…`), that variable replaces the default. "
             "Every command answers `--help`.", ""]
    lines += table(("command", "what it does"),
                   [[f"[{code(c)}](#{anchor(c)})", prose(h)] for c, h, _ in commands])
    for command, help_text, sub in commands:
        lines += ["", f"## {command}", ""]
        if help_text:
            lines += [prose(help_text[0].upper() + help_text[1:]) + ".", ""]
        lines += ["```", _usage(command, sub), "```"]
        for group in sub._action_groups:  # noqa: SLF001
            actions = [a for a in group._group_actions  # noqa: SLF001
                       if not isinstance(a, (argparse._HelpAction,  # noqa: SLF001
                                             argparse._SubParsersAction))]  # noqa: SLF001
            if not actions:
                continue
            title = group.title or "options"
            lines += ["", f"**{title[0].upper() + title[1:]}**", ""]
            lines += table(("option", "argument", "default", "description"),
                           [[_option_cell(a), _argument_cell(a), _default_cell(a),
                             _help_text(a)] for a in actions])
    return "\n".join(lines) + "\n"


# ---- entry point -------------------------------------------------------------------------

def generate() -> dict[Path, str]:
    """Relative path under docs/ → the page's text."""
    from mixerhub.plugins import load_plugins

    return {CONFIG_PAGE: config_page(load_plugins()), CLI_PAGE: cli_page()}


def stale(docs: Path = DOCS) -> list[Path]:
    """The generated pages whose file differs from what the code says now."""
    out = []
    for rel, text in generate().items():
        path = docs / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(rel)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixerhub.docgen", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true",
                      help="exit 1 if a generated page is out of date")
    mode.add_argument("--write", action="store_true", help="rewrite the generated pages")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the docs folder")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale(args.docs)
        for rel in out_of_date:
            print(f"docs/{rel.as_posix()} is out of date: run {REGENERATE}", file=sys.stderr)
        return 1 if out_of_date else 0
    for rel, text in generate().items():
        path = args.docs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote docs/{rel.as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
