"""Static types: every node gets its ValueType from the manifest and the function table, and
every misuse becomes an ExpressionCompileError naming the operator, function or attribute.

The rules are Mixer's: operands of a comparison, ``|``, ``+`` and ``conditional`` must have the
same type (no INT64/DOUBLE mixing), ``[]`` indexes a STRING_MAP with a STRING and yields a
STRING. One relaxation: a string literal that happens to read as a Go duration ("0", "10s")
is a DURATION, as in Mixer, but may also stand where a STRING is expected.
"""

from __future__ import annotations

from typing import NamedTuple

from mixerhub.attributes.types import TEXT_TYPES, Manifest, ValueType
from mixerhub.expr import nodes
from mixerhub.expr.errors import ExpressionCompileError

V = ValueType


class Signature(NamedTuple):
    """Argument types (None: the generic type T, fixed by its first use), result type (None: T),
    and for methods the type of the target."""

    args: tuple[ValueType | None, ...]
    result: ValueType | None
    target: ValueType | None = None


FUNCTIONS: dict[str, Signature] = {
    "match": Signature((V.STRING, V.STRING), V.BOOL),
    "ip": Signature((V.STRING,), V.IP_ADDRESS),
    "timestamp": Signature((V.STRING,), V.TIMESTAMP),
    "dnsName": Signature((V.STRING,), V.DNS_NAME),
    "email": Signature((V.STRING,), V.EMAIL_ADDRESS),
    "uri": Signature((V.STRING,), V.URI),
    "emptyStringMap": Signature((), V.STRING_MAP),
    "toLower": Signature((V.STRING,), V.STRING),
    "size": Signature((V.STRING,), V.INT64),
    "conditional": Signature((V.BOOL, None, None), None),
    "conditionalString": Signature((V.BOOL, V.STRING, V.STRING), V.STRING),
    "matches": Signature((V.STRING,), V.BOOL, target=V.STRING),
    "startsWith": Signature((V.STRING,), V.BOOL, target=V.STRING),
    "endsWith": Signature((V.STRING,), V.BOOL, target=V.STRING),
}

EQUALITY_TYPES = frozenset(ValueType) - {V.STRING_MAP}
ORDERED_TYPES = TEXT_TYPES | {V.INT64, V.DOUBLE, V.TIMESTAMP, V.DURATION}
ADDABLE_TYPES = frozenset({V.STRING, V.INT64, V.DOUBLE, V.DURATION})
COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})


class Checked(NamedTuple):
    type: ValueType
    attributes: frozenset[str]


def check(tree: nodes.Node, manifest: Manifest, text: str) -> Checked:
    """Type ``tree`` in place against ``manifest``; raise ExpressionCompileError on misuse."""
    checker = _Checker(manifest, text)
    return Checked(checker.visit(tree), frozenset(checker.attributes))


def is_flexible(node: nodes.Node) -> bool:
    """A duration-looking string literal that may still become a STRING."""
    return isinstance(node, nodes.Literal) and node.duration_text is not None and node.type is V.DURATION


def expect(node: nodes.Node, wanted: ValueType) -> bool:
    """Whether ``node`` has type ``wanted``, turning a flexible literal into a STRING if needed."""
    if node.type is wanted:
        return True
    if wanted is V.STRING and is_flexible(node):
        assert isinstance(node, nodes.Literal)
        node.value, node.type = node.duration_text, V.STRING
        return True
    return False


def unify(operands: list[nodes.Node]) -> ValueType | None:
    """The one type all operands share (STRING wins over flexible literals), or None."""
    if any(op.type is V.STRING for op in operands):
        for op in operands:
            expect(op, V.STRING)
    first = operands[0].type
    return first if all(op.type is first for op in operands) else None


class _Checker:
    def __init__(self, manifest: Manifest, text: str) -> None:
        self.manifest = manifest
        self.text = text
        self.attributes: set[str] = set()

    def error(self, message: str, position: int) -> ExpressionCompileError:
        return ExpressionCompileError(message, position=position, text=self.text)

    def visit(self, node: nodes.Node) -> ValueType:
        visit = getattr(self, "visit_" + type(node).__name__)
        node.type = visit(node)
        assert node.type is not None
        return node.type

    def visit_Literal(self, node: nodes.Literal) -> ValueType:
        assert node.type is not None
        return node.type

    def visit_Attribute(self, node: nodes.Attribute) -> ValueType:
        found = self.manifest.get(node.name)
        if found is None:
            raise self.error(f"unknown attribute '{node.name}'", node.pos)
        self.attributes.add(node.name)
        return found

    def visit_Index(self, node: nodes.Index) -> ValueType:
        target = self.visit(node.target)
        if target is not V.STRING_MAP:
            raise self.error(f"'[]' indexes a STRING_MAP, not {target.value}", node.bracket_pos)
        self.visit(node.key)
        if not expect(node.key, V.STRING):
            raise self.error(f"a map key must be STRING, not {_name(node.key)}", node.key.pos)
        return V.STRING

    def visit_Unary(self, node: nodes.Unary) -> ValueType:
        if node.op == "-":
            raise self.error("unary '-' is only supported before a number", node.pos)
        if node.op != "!":
            raise self.error(f"unary operator '{node.op}' is not supported", node.pos)
        operand = self.visit(node.operand)
        if operand is not V.BOOL:
            raise self.error(f"operator '!' needs a BOOL operand, not {operand.value}", node.pos)
        return V.BOOL

    def visit_Binary(self, node: nodes.Binary) -> ValueType:
        if node.op not in COMPARISONS:
            raise self.error(f"operator '{node.op}' is not supported", node.op_pos)
        self.visit(node.left)
        self.visit(node.right)
        shared = self.same_type([node.left, node.right], node.op, node.op_pos)
        allowed = EQUALITY_TYPES if node.op in ("==", "!=") else ORDERED_TYPES
        if shared not in allowed:
            raise self.error(f"operator '{node.op}' is not defined for {shared.value}", node.op_pos)
        return V.BOOL

    def visit_Chain(self, node: nodes.Chain) -> ValueType:
        for operand in node.operands:
            self.visit(operand)
        if node.op in ("||", "&&"):
            return self.logical(node)
        shared = self.same_type(node.operands, node.op, node.op_positions[0])
        if node.op == "+" and shared not in ADDABLE_TYPES:
            raise self.error(f"operator '+' is not defined for {shared.value}", node.op_positions[0])
        return shared

    def logical(self, node: nodes.Chain) -> ValueType:
        for i, operand in enumerate(node.operands):
            if operand.type is not V.BOOL:
                at = node.op_positions[max(i - 1, 0)]
                raise self.error(f"operator '{node.op}' needs BOOL operands, not {_name(operand)}", at)
        return V.BOOL

    def same_type(self, operands: list[nodes.Node], op: str, position: int) -> ValueType:
        shared = unify(operands)
        if shared is None:
            names = " and ".join(dict.fromkeys(_name(o) for o in operands))
            raise self.error(f"type mismatch: '{op}' between {names}", position)
        return shared

    def visit_Call(self, node: nodes.Call) -> ValueType:
        signature = self.signature(node)
        if node.target is not None:
            target = self.visit(node.target)
            if target is not signature.target:
                raise self.error(
                    f"{node.name}() is a method of {_type(signature.target)}, not of {target.value}",
                    node.name_pos,
                )
        for arg in node.args:
            self.visit(arg)
        return self.call_result(node, signature)

    def signature(self, node: nodes.Call) -> Signature:
        signature = FUNCTIONS.get(node.name)
        if signature is None:
            raise self.error(f"unknown function '{node.name}'", node.name_pos)
        if signature.target is not None and node.target is None:
            raise self.error(
                f"'{node.name}' is a method and needs a target, as in value.{node.name}(...)", node.name_pos
            )
        if signature.target is None and node.target is not None:
            raise self.error(f"'{node.name}' is a function, not a method: write {node.name}(...)", node.name_pos)
        if len(node.args) != len(signature.args):
            raise self.error(
                f"{node.name}() takes {len(signature.args)} argument(s), got {len(node.args)}", node.name_pos
            )
        return signature

    def call_result(self, node: nodes.Call, signature: Signature) -> ValueType:
        generic = [arg for arg, want in zip(node.args, signature.args, strict=True) if want is None]
        for i, (arg, want) in enumerate(zip(node.args, signature.args, strict=True), start=1):
            if want is not None and not expect(arg, want):
                raise self.error(f"{node.name}() argument {i} must be {want.value}, not {_name(arg)}", arg.pos)
        if not generic:
            assert signature.result is not None
            return signature.result
        shared = unify(generic)
        if shared is None:
            names = " and ".join(_name(arg) for arg in generic)
            raise self.error(f"type mismatch: {node.name}() arguments are {names}", node.name_pos)
        return signature.result or shared


def _name(node: nodes.Node) -> str:
    return node.type.value if node.type is not None else "?"


def _type(value_type: ValueType | None) -> str:
    return value_type.value if value_type is not None else "?"
