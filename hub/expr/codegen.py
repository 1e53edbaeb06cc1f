"""Typed tree → the source of one Python function ``_cexl(bag)``.

Why source and not closures: a tree of closures pays a Python call per node; one generated
function keeps every value in a local, inlines the dict look-ups and reference writes, and
lets CPython fold constants (``('ar', 'foo')`` becomes one constant). Safety: the generated
text contains only names made here and literals written with ``repr()`` of parsed values
(str, int, finite float, bool); every other constant (timedelta, IP, compiled regex) is
passed in as a global. User text is never pasted into the source.

Evaluation modes, as in Mixer's IL compiler:
  * value    — the operand must produce a value: a missing attribute raises
               "lookup failed", a missing map key yields "" (recorded as ABSENCE);
  * optional — the left operands of ``|``: an attribute, a map index or a ``|`` of them
               may come out MISSING and the next operand is tried. Anything else (a call,
               a comparison, a constant) is evaluated as a value and always counts as present.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, NamedTuple

from mixerhub.attributes.types import ValueType
from mixerhub.expr import nodes, runtime
from mixerhub.expr.errors import EvaluationError, ExpressionCompileError

V = ValueType
FUNCTION_NAME = "_cexl"
_EQUALITY_HELPERS = {V.DNS_NAME: "_dns_eq", V.EMAIL_ADDRESS: "_email_eq", V.URI: "_uri_eq", V.IP_ADDRESS: "_ip_eq"}
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_TERMS_PER_LINE = 32
# Conversions that may run at compile time when their argument is a literal.
_FOLDABLE: dict[str, tuple[Callable[[str], object], str]] = {
    "ip": (runtime.to_ip, "_ip"),
    "timestamp": (runtime.to_timestamp, "_timestamp"),
    "dnsName": (runtime.to_dns_name, "_dns"),
    "email": (runtime.to_email, "_email"),
    "uri": (runtime.to_uri, "_uri"),
    "size": (runtime.utf8_size, "_size"),
}


class Val(NamedTuple):
    """A generated Python expression. ``pure``: evaluating it can neither fail nor have an
    effect (a local or a constant), so it may be reordered or repeated. ``source``: for
    STRING_MAP values, the expression naming the attribute the map came from (or "None")."""

    expr: str
    pure: bool = False
    source: str = "None"


class Generated(NamedTuple):
    source: str
    constants: dict[str, Any]


def generate(tree: nodes.Node, text: str) -> Generated:
    """The function source for a checked tree, and the constants it expects as globals."""
    generator = _Generator(text)
    return Generated(generator.function(tree), generator.constants)


def generate_map(items: Sequence[tuple[str, Any]]) -> Generated:
    """One function that evaluates several checked trees in order and returns
    ``{key: value}``: an instance's fields (a logentry's variables, a metric's dimensions,
    or the whole instance) at the cost of one call. A value in ``items`` is a tree, None
    (the value None), or a sequence of (key, tree) pairs (a nested dict). Any exception
    hands the bag to ``_slow`` (the expressions one by one), which raises the precise
    error."""
    generator = _Generator("")

    def emit(pairs: Sequence[tuple[str, Any]]) -> str:
        results = []
        for key, item in pairs:
            if item is None:
                results.append(f"{key!r}: None")
            elif isinstance(item, nodes.Node):
                value = generator.value(item)
                name = generator.fresh()
                generator.emit(f"{name} = {value.expr}")
                results.append(f"{key!r}: {name}")
            else:
                results.append(f"{key!r}: {emit(item)}")
        return "{" + ", ".join(results) + "}"

    with generator.capture() as body:
        result = emit(items)
    prologue = ["values = bag.values", "refs = bag.refs"] if generator.uses_bag else []
    lines = [f"def {FUNCTION_NAME}(bag):", "    try:"]
    lines += ["        " + line for line in prologue]
    lines += ["        " + "    " * depth + line for depth, line in body.lines]
    lines += [
        f"        return {result}",
        "    except _Exception:",
        "        return _slow(bag)",
    ]
    return Generated("\n".join(lines) + "\n", generator.constants)


class _Block:
    __slots__ = ("depth", "lines")

    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []
        self.depth = 0


def _is_literal(value: object) -> bool:
    if type(value) in (str, int, bool):
        return True
    return type(value) is float and math.isfinite(value)  # "inf" and "nan" are not literals


def _is_constant_text(expr: str) -> bool:
    return expr[:1] in ("'", '"')


def can_be_absent(node: nodes.Node) -> bool:
    """Whether ``node`` may come out MISSING when evaluated as an alternative of ``|``."""
    if isinstance(node, (nodes.Attribute, nodes.Index)):
        return True
    if isinstance(node, nodes.Chain) and node.op == "|":
        return all(can_be_absent(op) for op in node.operands)
    return False


class _Generator:
    def __init__(self, text: str) -> None:
        self.text = text
        self.block = _Block()
        self.count = 0
        self.constants: dict[str, Any] = {}
        self.uses_bag = False
        self.keyed_targets: set[int] = set()  # ids of map attributes read only by key

    # --- emitting ------------------------------------------------------------------------

    def function(self, tree: nodes.Node) -> str:
        with self.capture() as body:
            result = self.value(tree)
        prologue = ["values = bag.values", "refs = bag.refs"] if self.uses_bag else []
        lines = [f"def {FUNCTION_NAME}(bag):", "    try:"]
        lines += ["        " + line for line in prologue]
        lines += ["        " + "    " * depth + line for depth, line in body.lines]
        lines += [
            f"        return {result.expr}",
            "    except _EvaluationError:",
            "        raise",
            "    except _Exception as exc:",
            "        raise _unexpected(exc) from exc",
        ]
        return "\n".join(lines) + "\n"

    def emit(self, line: str) -> None:
        self.block.lines.append((self.block.depth, line))

    @contextmanager
    def indented(self, header: str) -> Iterator[None]:
        self.emit(header)
        self.block.depth += 1
        try:
            yield
        finally:
            self.block.depth -= 1

    @contextmanager
    def capture(self) -> Iterator[_Block]:
        saved, self.block = self.block, _Block()
        try:
            yield self.block
        finally:
            self.block = saved

    def splice(self, block: _Block) -> None:
        for depth, line in block.lines:
            self.block.lines.append((self.block.depth + depth, line))

    def fresh(self) -> str:
        self.count += 1
        return f"t{self.count}"

    def assign(self, value: Val) -> Val:
        """``value`` held in a local, so that it can be used twice or after other code."""
        if value.pure:
            return value
        name = self.fresh()
        self.emit(f"{name} = {value.expr}")
        return Val(name, True, value.source)

    def constant(self, value: object) -> Val:
        if _is_literal(value):
            return Val(repr(value), True)
        name = f"_k{len(self.constants)}"
        self.constants[name] = value
        return Val(name, True)

    def in_order(self, operands: list[nodes.Node]) -> list[Val]:
        """Values of several operands, evaluated left to right as Mixer does: when a later
        operand needs statements, an earlier operand that could fail is computed first."""
        parts = []
        for operand in operands:
            with self.capture() as block:
                value = self.value(operand)
            parts.append((block, value))
        out = []
        for i, (block, value) in enumerate(parts):
            self.splice(block)
            if any(later.lines for later, _ in parts[i + 1 :]):
                value = self.assign(value)
            out.append(value)
        return out

    # --- value mode ----------------------------------------------------------------------

    def value(self, node: nodes.Node) -> Val:
        generate: Any = getattr(self, "value_" + type(node).__name__)
        result: Val = generate(node)
        return result

    def value_Literal(self, node: nodes.Literal) -> Val:
        return self.constant(node.value)

    def value_Attribute(self, node: nodes.Attribute) -> Val:
        self.uses_bag = True
        name, local = repr(node.name), self.fresh()
        self.emit(f"{local} = values.get({name}, MISSING)")
        with self.indented(f"if {local} is MISSING:"):
            self.emit(f"refs[{name}] = False")
            self.emit(f"raise _lookup_failed({name})")
        self.emit(self.present(node, name))
        self.check_class(local, name, node.type)
        return Val(local, True, name if node.type is V.STRING_MAP else "None")

    def check_class(self, local: str, name: str, value_type: ValueType | None) -> None:
        """Guard against a bag value whose Python type is not the manifest's."""
        assert value_type is not None
        test = f"{local}.__class__ is not {runtime.fast_class_name(value_type)}"
        if value_type is V.TIMESTAMP:
            test += f" or {local}.tzinfo is None"
        with self.indented(f"if {test}:"):
            self.emit(f"{local} = {runtime.coercer_name(value_type)}({name}, {local})")

    def value_Index(self, node: nodes.Index) -> Val:
        self.keyed_targets.add(id(node.target))
        target, key = self.in_order([node.target, node.key])
        key = self.assign(key)
        local = self.fresh()
        self.emit(f"{local} = {target.expr}.get({key.expr}, MISSING)")
        if target.source == "None":
            with self.indented(f"if {local} is MISSING:"):
                self.emit(f"{local} = ''")
            return Val(local, True)
        with self.indented(f"if {local} is MISSING:"):
            self.emit(f"{local} = ''")
            self.record_key(target.source, key.expr, "False")
        with self.indented("else:"):
            self.record_key(target.source, key.expr, "True")
        return Val(local, True)

    def record_key(self, source: str, key: str, present: str) -> None:
        """Record a map-key look-up; CPython folds ``(name, key)`` when both are constants."""
        if source == "None":
            return
        if _is_constant_text(source):
            self.emit(f"refs[({source}, {key})] = {present}")
            return
        with self.indented(f"if {source} is not None:"):
            self.emit(f"refs[({source}, {key})] = {present}")

    def value_Unary(self, node: nodes.Unary) -> Val:
        return Val(f"(not {self.value(node.operand).expr})")

    def value_Binary(self, node: nodes.Binary) -> Val:
        left, right = self.in_order([node.left, node.right])
        operand_type = node.left.type
        assert operand_type is not None
        helper = _EQUALITY_HELPERS.get(operand_type) if node.op in ("==", "!=") else None
        if helper is None:
            return Val(f"({left.expr} {node.op} {right.expr})")
        call = f"{helper}({left.expr}, {right.expr})"
        return Val(call if node.op == "==" else f"(not {call})")

    def value_Chain(self, node: nodes.Chain) -> Val:
        if node.op in ("||", "&&"):
            return self.logical(node)
        if node.op == "+":
            return self.addition(node)
        local = self.fresh()
        source = self.fresh() if node.type is V.STRING_MAP else None
        self.alternatives(node.operands, local, source, required=True)
        return Val(local, True, source or "None")

    def logical(self, node: nodes.Chain) -> Val:
        """Short-circuit: later operands (and their look-ups) run only when needed."""
        first = self.value(node.operands[0])
        rest = []
        for operand in node.operands[1:]:
            with self.capture() as block:
                rest.append((block, self.value(operand)))
        if not any(block.lines for block, _ in rest):
            word = " or " if node.op == "||" else " and "
            return Val("(" + word.join([first.expr] + [v.expr for _, v in rest]) + ")")
        local = self.fresh()
        self.emit(f"{local} = {first.expr}")
        test = f"not {local}" if node.op == "||" else local
        for block, value in rest:
            with self.indented(f"if {test}:"):
                self.splice(block)
                self.emit(f"{local} = {value.expr}")
        return Val(local, True)

    def addition(self, node: nodes.Chain) -> Val:
        terms = [v.expr for v in self.in_order(node.operands)]
        if node.type is not V.INT64 and len(terms) <= _TERMS_PER_LINE:
            return Val("(" + " + ".join(terms) + ")")
        local = self.fresh()
        # A long sum is split over lines: CPython compiles one long "a + b + ..." recursively.
        for start in range(0, len(terms), _TERMS_PER_LINE):
            head = [local] if start else []
            self.emit(f"{local} = {' + '.join(head + terms[start : start + _TERMS_PER_LINE])}")
        if node.type is V.INT64:
            with self.indented(f"if not {_INT64_MIN} <= {local} <= {_INT64_MAX}:"):
                self.emit("raise _overflow()")
        return Val(local, True)

    # --- optional mode (alternatives of "|") ---------------------------------------------

    def alternatives(self, operands: list[nodes.Node], local: str, source: str | None, *, required: bool) -> None:
        """Set ``local`` to the first present operand; MISSING if none (unless ``required``,
        where the last operand must produce a value). Flat: one ``if`` per operand."""
        for i, operand in enumerate(operands):
            guard = self.indented(f"if {local} is MISSING:") if i else nullcontext()
            absent_possible = can_be_absent(operand) and not (required and i == len(operands) - 1)
            with guard:
                if absent_possible:
                    origin = self.optional(operand, local)
                else:
                    value = self.value(operand)
                    self.emit(f"{local} = {value.expr}")
                    origin = value.source
                if source is not None:
                    self.emit(f"{source} = {origin}")
            if not can_be_absent(operand):
                return  # the operands after one that is always present can never be reached

    def optional(self, node: nodes.Node, local: str) -> str:
        """Emit code setting ``local`` to the value or MISSING; return the map-source expression."""
        if isinstance(node, nodes.Attribute):
            return self.optional_attribute(node, local)
        if isinstance(node, nodes.Index):
            self.optional_index(node, local)
            return "None"
        assert isinstance(node, nodes.Chain) and node.op == "|"
        source = self.fresh() if node.type is V.STRING_MAP else None
        self.alternatives(node.operands, local, source, required=False)
        return source or "None"

    def optional_attribute(self, node: nodes.Attribute, local: str) -> str:
        self.uses_bag = True
        name = repr(node.name)
        self.emit(f"{local} = values.get({name}, MISSING)")
        with self.indented(f"if {local} is MISSING:"):
            self.emit(f"refs[{name}] = False")
        with self.indented("else:"):
            self.emit(self.present(node, name))
            self.check_class(local, name, node.type)
        return name if node.type is V.STRING_MAP else "None"

    def present(self, node: nodes.Attribute, name: str) -> str:
        """The reference of a found attribute: a map fetched only as an index target is
        KEYED (2, see mixerhub.attributes.bag) unless a whole-map use already said True."""
        if id(node) in self.keyed_targets:
            return f"refs.setdefault({name}, 2)"
        return f"refs[{name}] = True"

    def optional_index(self, node: nodes.Index, local: str) -> None:
        """Mixer order: the map first; the key only if the map is present; then the entry."""
        self.keyed_targets.add(id(node.target))
        target = self.fresh()
        source = self.optional(node.target, target) if can_be_absent(node.target) else None
        if source is None:
            value = self.value(node.target)
            self.emit(f"{target} = {value.expr}")
            source = value.source
        self.emit(f"{local} = MISSING")
        with self.indented(f"if {target} is not MISSING:"):
            if not can_be_absent(node.key):
                key = self.assign(self.value(node.key)).expr
                self.lookup_entry(local, target, source, key)
                return
            key = self.fresh()
            self.optional(node.key, key)
            with self.indented(f"if {key} is not MISSING:"):
                self.lookup_entry(local, target, source, key)

    def lookup_entry(self, local: str, target: str, source: str, key: str) -> None:
        self.emit(f"{local} = {target}.get({key}, MISSING)")
        self.record_key(source, key, f"{local} is not MISSING")

    # --- function calls ------------------------------------------------------------------

    def value_Call(self, node: nodes.Call) -> Val:
        if node.name in ("conditional", "conditionalString"):
            return self.conditional(node)
        operands = ([node.target] if node.target is not None else []) + node.args
        values = self.in_order(operands)
        folded = self.fold(node, operands)
        if folded is not None:
            return folded
        generate: Any = getattr(self, "call_" + node.name)
        result: Val = generate(node, *values)
        return result

    def fold(self, node: nodes.Call, operands: list[nodes.Node]) -> Val | None:
        """A conversion of a literal, done once now. If it fails, the call stays in the code
        and fails at evaluation, where Mixer reported it."""
        if node.name not in _FOLDABLE or not isinstance(operands[0], nodes.Literal):
            return None
        convert, helper = _FOLDABLE[node.name]
        argument = operands[0].value
        assert isinstance(argument, str)  # the checker admits only STRING arguments here
        try:
            return self.constant(convert(argument))
        except EvaluationError:
            return Val(f"{helper}({self.constant(argument).expr})")

    def conditional(self, node: nodes.Call) -> Val:
        condition = self.value(node.args[0])
        branches = []
        for arg in node.args[1:]:
            with self.capture() as block:
                branches.append((block, self.value(arg)))
        (yes_block, yes), (no_block, no) = branches
        if not yes_block.lines and not no_block.lines and node.type is not V.STRING_MAP:
            return Val(f"({yes.expr} if {condition.expr} else {no.expr})")
        local = self.fresh()
        source = self.fresh() if node.type is V.STRING_MAP else None
        for header, (block, value) in ((f"if {condition.expr}:", branches[0]), ("else:", branches[1])):
            with self.indented(header):
                self.splice(block)
                self.emit(f"{local} = {value.expr}")
                if source is not None:
                    self.emit(f"{source} = {value.source}")
        return Val(local, True, source or "None")

    def call_match(self, node: nodes.Call, text: Val, pattern: Val) -> Val:
        literal = node.args[1]
        if not isinstance(literal, nodes.Literal):
            return Val(f"_glob({text.expr}, {pattern.expr})")
        glob = literal.value
        assert isinstance(glob, str)
        if glob.endswith("*"):
            return Val(f"{text.expr}.startswith({glob[:-1]!r})")
        if glob.startswith("*"):
            return Val(f"{text.expr}.endswith({glob[1:]!r})")
        return Val(f"({text.expr} == {glob!r})")

    def call_matches(self, node: nodes.Call, pattern: Val, text: Val) -> Val:
        literal = node.target
        if not isinstance(literal, nodes.Literal):
            return Val(f"_matches({pattern.expr}, {text.expr})")
        assert isinstance(literal.value, str)
        try:
            compiled = runtime.compile_regex(literal.value)
        except re.error as exc:
            raise ExpressionCompileError(
                f"matches(): '{literal.value}' is not a valid regular expression: {exc}",
                position=literal.pos,
                text=self.text,
            ) from None
        return Val(f"({self.constant(compiled).expr}.search({text.expr}) is not None)")

    def call_startsWith(self, node: nodes.Call, text: Val, prefix: Val) -> Val:
        return Val(f"{text.expr}.startswith({prefix.expr})")

    def call_endsWith(self, node: nodes.Call, text: Val, suffix: Val) -> Val:
        return Val(f"{text.expr}.endswith({suffix.expr})")

    def call_toLower(self, node: nodes.Call, text: Val) -> Val:
        if isinstance(node.args[0], nodes.Literal):
            return self.constant(str(node.args[0].value).lower())
        return Val(f"{text.expr}.lower()")

    def call_emptyStringMap(self, node: nodes.Call) -> Val:
        return Val("{}", True)  # a new dict each time: callers may change what they get

    def call_size(self, node: nodes.Call, text: Val) -> Val:
        return Val(f"_size({text.expr})")

    def call_ip(self, node: nodes.Call, text: Val) -> Val:
        return Val(f"_ip({text.expr})")

    def call_timestamp(self, node: nodes.Call, text: Val) -> Val:
        return Val(f"_timestamp({text.expr})")

    def call_dnsName(self, node: nodes.Call, text: Val) -> Val:
        return Val(f"_dns({text.expr})")

    def call_email(self, node: nodes.Call, text: Val) -> Val:
        return Val(f"_email({text.expr})")

    def call_uri(self, node: nodes.Call, text: Val) -> Val:
        return Val(f"_uri({text.expr})")
