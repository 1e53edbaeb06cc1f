"""The syntax tree of an expression. The checker fills in ``type`` on every node.

Runs of one left-associative operator (``a || b || c``, ``a | b | c``, ``a + b + c``) are kept as
one ``Chain`` so that checking and code generation need no recursion per operand: long
alternations stay flat in the generated Python.
"""

from __future__ import annotations

from mixerhub.attributes.types import ValueType


class Node:
    """Base of all nodes: ``pos`` is the 0-based column where the node's text starts."""

    __slots__ = ("pos", "type")

    def __init__(self, pos: int) -> None:
        self.pos = pos
        self.type: ValueType | None = None

    def children(self) -> list[Node]:
        return []


class Literal(Node):
    """A constant. ``duration_text`` keeps the text of a string literal that reads as a Go
    duration: such a literal is a DURATION, but may still be used where a STRING is expected."""

    __slots__ = ("duration_text", "value")

    def __init__(self, pos: int, value: object, value_type: ValueType) -> None:
        super().__init__(pos)
        self.value = value
        self.type = value_type
        self.duration_text: str | None = None


class Attribute(Node):
    """A dotted attribute name such as ``request.headers``."""

    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name


class Index(Node):
    """``target[key]`` on a string map."""

    __slots__ = ("bracket_pos", "key", "target")

    def __init__(self, pos: int, target: Node, key: Node, bracket_pos: int) -> None:
        super().__init__(pos)
        self.target = target
        self.key = key
        self.bracket_pos = bracket_pos

    def children(self) -> list[Node]:
        return [self.target, self.key]


class Call(Node):
    """``name(args)``, or ``target.name(args)`` for a method."""

    __slots__ = ("args", "name", "name_pos", "target")

    def __init__(self, pos: int, name: str, target: Node | None, args: list[Node], name_pos: int) -> None:
        super().__init__(pos)
        self.name = name
        self.target = target
        self.args = args
        self.name_pos = name_pos

    def children(self) -> list[Node]:
        return ([self.target] if self.target is not None else []) + self.args


class Unary(Node):
    """A prefix operator applied to one operand."""

    __slots__ = ("op", "operand")

    def __init__(self, pos: int, op: str, operand: Node) -> None:
        super().__init__(pos)
        self.op = op
        self.operand = operand

    def children(self) -> list[Node]:
        return [self.operand]


class Binary(Node):
    """A comparison or another operator that does not chain (``==``, ``<``, ``/``...)."""

    __slots__ = ("left", "op", "op_pos", "right")

    def __init__(self, op: str, left: Node, right: Node, op_pos: int) -> None:
        super().__init__(left.pos)
        self.op = op
        self.left = left
        self.right = right
        self.op_pos = op_pos

    def children(self) -> list[Node]:
        return [self.left, self.right]


class Chain(Node):
    """``operands[0] op operands[1] op ...`` for ``||``, ``&&``, ``|`` and ``+``."""

    __slots__ = ("op", "op_positions", "operands")

    def __init__(self, op: str, operands: list[Node], op_positions: list[int]) -> None:
        super().__init__(operands[0].pos)
        self.op = op
        self.operands = operands
        self.op_positions = op_positions

    def children(self) -> list[Node]:
        return list(self.operands)


CHAIN_OPERATORS = frozenset({"||", "&&", "|", "+"})


def depth(node: Node) -> int:
    """The nesting depth of a tree, found without recursion."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in current.children())
    return deepest
