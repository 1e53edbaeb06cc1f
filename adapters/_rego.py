"""Rego in-process through regopy (rego-cpp), wrapped so that no policy can hurt the hub.

Facts about regopy 1.5.2 this module is written around (tests/adapters/test_rego.py pins
each one):

- A query string is compiled again on every call (~4 ms for OPA-Envoy's quick start); a
  bundle built once with the decision as its entrypoint evaluates in ~0.1 ms. (A query
  whose value is ``false`` also answers "undefined"; an entrypoint answers ``false``.)
- ``Output.binding()`` / ``expressions()`` on an undefined result or a wrong index abort the
  whole process (an uncaught C++ ``std::out_of_range``), and ``Output()`` itself raises on
  some internal errors. Only the C functions that return the output as text are used here,
  and the result is parsed by us.
- A built-in regopy lacks makes every rule using it silently undefined, so policies are
  scanned at load and such built-ins are refused by name.
- Errors are printed to stdout unless the interpreter's log level is NONE.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from typing import Any

import regopy
from regopy import Input, Interpreter, LogLevel, NodeKind, RegoError
from regopy import rego_shared as _c

#: Called like built-ins but handled by regopy without being listed as built-ins.
_HANDLED = frozenset({"print"})
#: Words followed by "(" that are no function call.
_KEYWORDS = frozenset({"not", "some", "every", "with", "if", "else", "contains", "in", "as",
                       "default", "package", "import", "set"})
_STRINGS_AND_COMMENTS = re.compile(r'"(?:\\.|[^"\\\n])*"|`[^`]*`|#[^\n]*')
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")
_IMPORT = re.compile(r"^\s*import\s+(data|input)((?:\.\w+)*)(?:\s+as\s+(\w+))?", re.M)
_ERROR_AT = re.compile(r"\(error \d+:[^|\s]*\|(\d+)\|")
_ERROR_MSG = re.compile(r"\(errormsg \d+:([^\n]*?)\)?\n")
_COMPILE_CODE = re.compile(r"\b(wellformed_error|rego_\w+|bundle verify)\b")
REF = re.compile(r"data(\.[A-Za-z_]\w*)+")


class RegoFailure(Exception):
    """A policy that does not compile, or an evaluation that failed (never a crash)."""


@dataclasses.dataclass(frozen=True)
class Decision:
    defined: bool
    value: Any = None


def engine_version() -> str:
    return str(regopy.__version__)


def new_interpreter() -> Interpreter:
    rego = Interpreter()
    rego.log_level = LogLevel.NONE  # otherwise errors are printed to stdout
    return rego


# ---- load: compile, and refuse built-ins the engine lacks ----------------------------------

def compile_policy(modules: Sequence[str]) -> Interpreter:
    """An interpreter holding ``modules``; RegoFailure naming the module and line if any
    does not parse."""
    rego = new_interpreter()
    for index, source in enumerate(modules):
        try:
            rego.add_module(f"policy{index}.rego", source)
        except RegoError as exc:
            raise RegoFailure(f"policy[{index}]{_where(str(exc), source)}: "
                              f"{_first_message(str(exc))}") from None
    return rego


def missing_builtins(modules: Sequence[str], rego: Interpreter) -> list[str]:
    """Built-ins the policy calls that the engine lacks, as ``name (policy[i] line n)``."""
    cleaned = [_STRINGS_AND_COMMENTS.sub(_blank, source) for source in modules]
    defined = set().union(*(_definitions(code) for code in cleaned))
    aliases = {"data", "input"} | set().union(*(_aliases(code) for code in cleaned))
    missing: dict[str, str] = {}
    for index, code in enumerate(cleaned):
        for match in _CALL.finditer(code):
            name = match.group(1)
            if name in missing or _user_or_keyword(name, defined, aliases):
                continue
            if name not in _HANDLED and not rego.is_builtin(name):
                line = code.count("\n", 0, match.start()) + 1
                missing[name] = f"{name} (policy[{index}] line {line})"
    return list(missing.values())


def _blank(match: re.Match[str]) -> str:
    text = match.group(0)
    return '""' if text[0] in '"`' and "\n" not in text else "\n" * text.count("\n")


def _definitions(code: str) -> set[str]:
    """Names of functions defined at the top level: a statement starting ``name(``."""
    found, depth = set(), 0
    for line in code.splitlines():
        if depth == 0:
            head = re.match(r"\s*(?:default\s+)?([A-Za-z_][\w.]*)\s*\(", line)
            if head and head.group(1) not in _KEYWORDS:
                found.add(head.group(1))
        depth = max(depth + sum(line.count(c) for c in "{[(")
                    - sum(line.count(c) for c in "}])"), 0)
    return found


def _aliases(code: str) -> set[str]:
    names = set()
    for match in _IMPORT.finditer(code):
        path = match.group(2).strip(".").split(".")
        names.add(match.group(3) or (path[-1] if path[-1] else match.group(1)))
    return names


def _user_or_keyword(name: str, defined: set[str], aliases: set[str]) -> bool:
    return name in _KEYWORDS or name in defined or name.split(".")[0] in aliases


# ---- evaluation ---------------------------------------------------------------------------

class Policy:
    """Modules compiled once into a bundle with one entrypoint, the decision; evaluated per
    request with the bundle (40x faster than a query string, which recompiles each time)."""

    def __init__(self, modules: Sequence[str], ref: str) -> None:
        self.rego = compile_policy(modules)
        self.entrypoint = ref[len("data."):].replace(".", "/")
        try:
            self.bundle = self.rego.build(None, [self.entrypoint])
        except RegoError as exc:
            raise RegoFailure(_first_message(str(exc))) from None
        if not self.bundle.ok():
            raise RegoFailure(f"no bundle could be built for {ref}")

    def evaluate(self, document: dict[str, Any]) -> Decision:
        """The decision for this input; RegoFailure on any engine error."""
        try:
            value = Input(document)  # held until the query is done
            self.rego.set_input(value)
            handle = _c.rego_bundle_query_entrypoint(self.rego._impl, self.bundle._impl,
                                                     self.entrypoint)
        except (RegoError, ValueError) as exc:
            raise RegoFailure(_first_message(str(exc))) from None
        try:
            ok = bool(_c.rego_output_ok(handle))
            text = _c.rego_output_string(handle)
            errors = [] if ok else _error_messages(_c.rego_output_node(handle))
        finally:
            _c.rego_free_output(handle)
        if not ok:
            raise RegoFailure("; ".join(errors) or "evaluation failed")
        return _decision(text)


def _decision(text: str) -> Decision:
    if text.strip() == "undefined":
        return Decision(False)
    try:
        output = json.loads(text)
    except ValueError:  # regopy reports some internal errors as text with ok == true
        raise RegoFailure(_first_message(text)) from None
    results = output if isinstance(output, list) else [output]
    values = [r["expressions"][0] for r in results
              if isinstance(r, dict) and r.get("expressions")]
    if not values:
        return Decision(False)
    if any(v != values[0] for v in values[1:]):
        raise RegoFailure("the decision has more than one value")
    return Decision(True, values[0])


def _error_messages(node: Any, depth: int = 0) -> list[str]:
    """Messages and codes in an error node, read with bounds checked at every step."""
    kind = _c.rego_node_type(node)
    if kind in (NodeKind.ErrorMessage, NodeKind.ErrorCode):
        return [_c.rego_node_value(node)]
    if depth > 3 or kind == NodeKind.ErrorAst:
        return []
    found: list[str] = []
    for i in range(_c.rego_node_size(node)):
        found += _error_messages(_c.rego_node_get(node, i), depth + 1)
    return found


def _first_message(text: str) -> str:
    found = _ERROR_MSG.search(text)
    if found:
        return found.group(1).strip()
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else "unknown engine error"


def _where(text: str, source: str) -> str:
    found = _ERROR_AT.search(text)
    return f" line {source.count(chr(10), 0, int(found.group(1))) + 1}" if found else ""


def probe(policy: Policy) -> None:
    """Evaluate once on an empty input so errors regopy finds only when it runs the plan
    (``wellformed_error``, ``rego_*`` codes, ``bundle verify``) surface at load; ValueError
    if one does.
    Evaluation errors (``eval_*``) depend on the input and are left to requests."""
    try:
        policy.evaluate({})
    except RegoFailure as exc:
        if _COMPILE_CODE.search(str(exc)):
            raise ValueError(f"policy does not compile: {exc}") from None
