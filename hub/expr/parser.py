"""Text → syntax tree. Precedence and associativity are Go's, as in Mixer:

    5  * / % << >> & &^      (parsed so that they can be reported; only the ones in
    4  + - | ^                checker.py's tables are supported)
    3  == != < <= > >=
    2  &&
    1  ||

so ``a | "x" + b`` is ``(a | "x") + b``. Prefix operators bind tighter than any of these.
"""

from __future__ import annotations

from mixerhub.attributes.types import ValueType
from mixerhub.expr import nodes
from mixerhub.expr.errors import ExpressionCompileError
from mixerhub.expr.lexer import Token, tokenize
from mixerhub.expr.values import parse_go_duration

_PRECEDENCE = {
    "||": 1, "&&": 2,
    "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3,
    "+": 4, "-": 4, "|": 4, "^": 4,
    "*": 5, "/": 5, "%": 5, "<<": 5, ">>": 5, "&": 5, "&^": 5,
}  # fmt: skip
_PREFIX = frozenset({"!", "-", "+", "^", "*", "&"})
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
#: Deeper nesting than this is refused: it is never needed, and it would make the generated
#: Python exceed the interpreter's indentation and recursion limits.
MAX_NESTING = 40


def parse(text: str) -> nodes.Node:
    """The syntax tree of ``text``; raises ExpressionCompileError on bad syntax."""
    parser = _Parser(text)
    tree = parser.expression(1)
    parser.expect_end()
    if nodes.depth(tree) > MAX_NESTING:
        raise ExpressionCompileError(
            f"expression is nested too deeply (more than {MAX_NESTING} levels)", position=0, text=text
        )
    return tree


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.at = 0
        self.nesting = 0

    # --- token helpers -------------------------------------------------------------------

    def peek(self) -> Token:
        return self.tokens[self.at]

    def advance(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def is_op(self, op: str) -> bool:
        token = self.tokens[self.at]
        return token.kind == "op" and token.text == op

    def expect_op(self, op: str) -> Token:
        if not self.is_op(op):
            raise self.unexpected(f"expected '{op}'")
        return self.advance()

    def expect_end(self) -> None:
        if self.peek().kind != "eof":
            raise self.unexpected("expected the end of the expression")

    def error(self, message: str, position: int) -> ExpressionCompileError:
        return ExpressionCompileError(message, position=position, text=self.text)

    def unexpected(self, wanted: str) -> ExpressionCompileError:
        token = self.peek()
        if token.kind == "eof":
            return self.error(f"unexpected end of expression: {wanted}", token.pos)
        hint = " (use '==' to compare)" if token.text == "=" else ""
        return self.error(f"{wanted}, found '{token.text}'{hint}", token.pos)

    # --- grammar -------------------------------------------------------------------------

    def expression(self, min_precedence: int) -> nodes.Node:
        left = self.unary()
        while True:
            token = self.peek()
            precedence = _PRECEDENCE.get(token.text, 0) if token.kind == "op" else 0
            if precedence < min_precedence:
                return left
            self.advance()
            right = self.expression(precedence + 1)
            left = _combine(token, left, right)

    def unary(self) -> nodes.Node:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.error(f"expression is nested too deeply (more than {MAX_NESTING} levels)", self.peek().pos)
        try:
            return self._unary()
        finally:
            self.nesting -= 1

    def _unary(self) -> nodes.Node:
        token = self.peek()
        if token.kind != "op" or token.text not in _PREFIX:
            return self.postfix()
        self.advance()
        if token.text == "-" and self.peek().kind in ("int", "float"):
            return self.number(self.advance(), negate=True, pos=token.pos)
        return nodes.Unary(token.pos, token.text, self.unary())

    def postfix(self) -> nodes.Node:
        node, extendable = self.primary()
        while True:
            if self.is_op("["):
                node, extendable = self.index(node), False
            elif self.is_op("."):
                node, extendable = self.selector(node, extendable)
            else:
                return node

    def index(self, target: nodes.Node) -> nodes.Node:
        bracket = self.advance()
        key = self.expression(1)
        self.expect_op("]")
        return nodes.Index(target.pos, target, key, bracket.pos)

    def selector(self, node: nodes.Node, extendable: bool) -> tuple[nodes.Node, bool]:
        self.advance()
        name = self.peek()
        if name.kind != "ident":
            raise self.unexpected("expected a name after '.'")
        self.advance()
        if self.is_op("("):
            return nodes.Call(node.pos, name.text, node, self.arguments(), name.pos), False
        if extendable and isinstance(node, nodes.Attribute):
            return nodes.Attribute(node.pos, f"{node.name}.{name.text}"), True
        raise self.error(f"'.{name.text}' must be a method call: only attribute names continue with '.'", name.pos)

    def arguments(self) -> list[nodes.Node]:
        self.expect_op("(")
        args: list[nodes.Node] = []
        while not self.is_op(")"):
            args.append(self.expression(1))
            if not self.is_op(")"):
                self.expect_op(",")
        self.advance()
        return args

    def primary(self) -> tuple[nodes.Node, bool]:
        token = self.peek()
        if token.kind in ("int", "float"):
            return self.number(self.advance(), negate=False, pos=token.pos), False
        if token.kind == "string":
            return _string_literal(self.advance()), False
        if token.kind == "ident":
            return self.name()
        if self.is_op("("):
            self.advance()
            inner = self.expression(1)
            self.expect_op(")")
            return inner, False
        raise self.unexpected("expected an operand")

    def name(self) -> tuple[nodes.Node, bool]:
        token = self.advance()
        if self.is_op("("):
            return nodes.Call(token.pos, token.text, None, self.arguments(), token.pos), False
        if token.text.lower() in ("true", "false"):
            return nodes.Literal(token.pos, token.text.lower() == "true", ValueType.BOOL), False
        return nodes.Attribute(token.pos, token.text), True

    def number(self, token: Token, *, negate: bool, pos: int) -> nodes.Node:
        value = token.value
        assert isinstance(value, (int, float))
        if negate:
            value = -value
        if isinstance(value, float):
            return nodes.Literal(pos, value, ValueType.DOUBLE)
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise self.error(f"integer '{'-' if negate else ''}{token.text}' does not fit in INT64", pos)
        return nodes.Literal(pos, value, ValueType.INT64)


def _string_literal(token: Token) -> nodes.Literal:
    assert isinstance(token.value, str)
    duration = parse_go_duration(token.value)
    if duration is None:
        return nodes.Literal(token.pos, token.value, ValueType.STRING)
    literal = nodes.Literal(token.pos, duration, ValueType.DURATION)
    literal.duration_text = token.value
    return literal


def _combine(token: Token, left: nodes.Node, right: nodes.Node) -> nodes.Node:
    op = token.text
    if op not in nodes.CHAIN_OPERATORS:
        return nodes.Binary(op, left, right, token.pos)
    if isinstance(left, nodes.Chain) and left.op == op:
        left.operands.append(right)
        left.op_positions.append(token.pos)
        return left
    return nodes.Chain(op, [left, right], [token.pos])
