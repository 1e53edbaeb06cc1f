"""Properties of the expression front end, on generated input (hypothesis):

* random syntax trees, rendered fully parenthesised, parse back to the same tree;
* compiling any text — random trees, token streams over the lexer's whole vocabulary, any
  Unicode, absurd nesting — raises nothing but ExpressionCompileError, and a compiled
  expression raises nothing but EvaluationError on any bag.

test_compiler.py holds the printable-text, token-soup and well-typed-expression
properties; these add what they do not reach (every operator, escapes, Unicode, depth).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixerhub.attributes.bag import AttributeBag
from mixerhub.attributes.types import ValueType as V
from mixerhub.attributes.types import default_manifest
from mixerhub.expr import EvaluationError, ExpressionCompileError, compile_expression
from mixerhub.expr import nodes
from mixerhub.expr.checker import FUNCTIONS
from mixerhub.expr.parser import parse
from mixerhub.expr.values import parse_go_duration

MANIFEST = default_manifest()
ATTRIBUTES = sorted(MANIFEST)
PREFIX = ["!", "-", "+", "^", "*", "&"]
BINARY = ["==", "!=", "<", "<=", ">", ">=", "-", "^", "*", "/", "%", "<<", ">>", "&", "&^"]
CHAIN = ["||", "&&", "|", "+"]
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# --- trees ------------------------------------------------------------------------------

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda name: name.lower() not in ("true", "false"))
attribute_names = st.one_of(st.sampled_from(ATTRIBUTES),
                            st.lists(identifiers, min_size=1, max_size=3).map(".".join))
function_names = st.one_of(st.sampled_from(sorted(FUNCTIONS)), identifiers)
plain_strings = st.text(st.characters(exclude_categories=("Cs",)), max_size=8).filter(
    lambda s: parse_go_duration(s) is None)
leaves = st.one_of(
    st.integers(0, 2**63 - 1).map(lambda i: ("lit", V.INT64, i)),
    st.floats(0, 1e300, allow_nan=False, allow_infinity=False).map(
        lambda f: ("lit", V.DOUBLE, f)),
    plain_strings.map(lambda s: ("lit", V.STRING, s)),
    st.sampled_from(["1s", "10ms", "1h30m", "0"]).map(lambda s: ("lit", V.DURATION, s)),
    st.booleans().map(lambda b: ("lit", V.BOOL, b)),
    attribute_names.map(lambda n: ("attr", n)),
)


def _trees(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.tuples(st.just("unary"), st.sampled_from(PREFIX), children),
        st.tuples(st.just("binary"), st.sampled_from(BINARY), children, children),
        st.tuples(st.just("chain"), st.sampled_from(CHAIN),
                  st.lists(children, min_size=2, max_size=4).map(tuple)),
        st.tuples(st.just("index"), children, children),
        st.tuples(st.just("call"), function_names, st.lists(children, max_size=3).map(tuple)),
        st.tuples(st.just("method"), children, function_names,
                  st.lists(children, max_size=2).map(tuple)),
    )


trees = st.recursive(leaves, _trees, max_leaves=12)


def render(tree: Any) -> str:
    """A tree as text, every operand parenthesised so the text has one reading."""
    kind = tree[0]
    if kind == "lit":
        return _literal(tree[1], tree[2])
    if kind == "attr":
        return tree[1]
    if kind == "unary":
        return f"{tree[1]}({render(tree[2])})"
    if kind == "binary":
        return f"({render(tree[2])}) {tree[1]} ({render(tree[3])})"
    if kind == "chain":
        return f" {tree[1]} ".join(f"({render(t)})" for t in tree[2])
    if kind == "index":
        return f"({render(tree[1])})[{render(tree[2])}]"
    if kind == "call":
        return f"{tree[1]}({', '.join(render(a) for a in tree[2])})"
    return f"({render(tree[1])}).{tree[2]}({', '.join(render(a) for a in tree[3])})"


def _literal(value_type: V, value: Any) -> str:
    if value_type is V.BOOL:
        return "true" if value else "false"
    if value_type in (V.INT64, V.DOUBLE):
        return repr(value)
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and char != "\n":
            out.append(char)
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def expected(tree: Any) -> Any:
    """The shape parse() must give for ``tree``."""
    kind = tree[0]
    if kind == "lit":
        value = parse_go_duration(tree[2]) if tree[1] is V.DURATION else tree[2]
        return ("lit", tree[1], value)
    if kind == "attr":
        return tree
    if kind == "unary":
        return ("unary", tree[1], expected(tree[2]))
    if kind == "binary":
        return ("binary", tree[1], expected(tree[2]), expected(tree[3]))
    if kind == "chain":
        return _flatten(tree[1], [expected(t) for t in tree[2]])
    if kind == "index":
        return ("index", expected(tree[1]), expected(tree[2]))
    if kind == "call":
        return ("call", tree[1], None, tuple(expected(a) for a in tree[2]))
    return ("call", tree[2], expected(tree[1]), tuple(expected(a) for a in tree[3]))


def _flatten(op: str, operands: list[Any]) -> Any:
    # The parser folds a left operand that is a run of the same operator into one run,
    # parenthesised or not (the four chain operators are associative).
    first = operands[0]
    if first[0] == "chain" and first[1] == op:
        return ("chain", op, first[2] + tuple(operands[1:]))
    return ("chain", op, tuple(operands))


def shape(node: nodes.Node) -> Any:
    """A parsed tree without positions."""
    if isinstance(node, nodes.Literal):
        return ("lit", node.type, node.value)
    if isinstance(node, nodes.Attribute):
        return ("attr", node.name)
    if isinstance(node, nodes.Unary):
        return ("unary", node.op, shape(node.operand))
    if isinstance(node, nodes.Binary):
        return ("binary", node.op, shape(node.left), shape(node.right))
    if isinstance(node, nodes.Chain):
        return ("chain", node.op, tuple(shape(o) for o in node.operands))
    if isinstance(node, nodes.Index):
        return ("index", shape(node.target), shape(node.key))
    assert isinstance(node, nodes.Call)
    target = shape(node.target) if node.target is not None else None
    return ("call", node.name, target, tuple(shape(a) for a in node.args))


def too_deep(exc: ExpressionCompileError) -> bool:
    return "nested too deeply" in exc.message


@SETTINGS
@given(trees)
def test_a_rendered_tree_parses_back_to_itself(tree: Any) -> None:
    text = render(tree)
    try:
        parsed = parse(text)
    except ExpressionCompileError as exc:
        assert too_deep(exc), (text, exc.message)
        return
    assert shape(parsed) == expected(tree), text


BAG = AttributeBag({
    "request.path": "/a", "request.headers": {"x-user": "alice"}, "request.size": 7,
    "source.ip": ipaddress.ip_address("10.0.0.1"), "connection.mtls": True,
    "request.time": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    "response.duration": dt.timedelta(milliseconds=3), "destination.service.host": "a.b",
})


def compiles_or_refuses(text: str) -> None:
    """The property: only the documented error types, at compile and at evaluation."""
    try:
        compiled = compile_expression(text, MANIFEST)
    except ExpressionCompileError as exc:
        assert exc.message and (exc.position is None or 0 <= exc.position <= len(text))
        return
    with contextlib.suppress(EvaluationError):
        compiled(AttributeBag(dict(BAG.values)))


@SETTINGS
@given(trees)
def test_any_tree_compiles_or_raises_only_a_compile_error(tree: Any) -> None:
    compiles_or_refuses(render(tree))


TOKENS = [*PREFIX, *BINARY, *CHAIN, "(", ")", "[", "]", ",", ".", "=", "`raw`", "`", '"',
          "'", '"\\x41\\u00e9\\101"', '"\\q"', '"\\uD800"', "'ab'", "1e400", "0x10",
          "9223372036854775808", "1.5e-3", ".5", "007", "ü", "名前", "\t", "\n", "#", "@",
          "request.path", "request.headers", "source.ip", '"x"', "size", "ip", "match",
          "conditional", "startsWith", "matches", "emptyStringMap", "true", "FALSE", " "]


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=16))
def test_any_token_stream_compiles_or_raises_only_a_compile_error(tokens: list[str]) -> None:
    compiles_or_refuses("".join(tokens))


@SETTINGS
@given(st.text(max_size=40))
def test_any_unicode_text_compiles_or_raises_only_a_compile_error(text: str) -> None:
    compiles_or_refuses(text)


@pytest.mark.parametrize("text", [
    "(" * 5000 + "request.path" + ")" * 5000,
    "!" * 5000 + "connection.mtls",
    "-" * 5000 + "request.size",
    " || ".join(["connection.mtls"] * 5000),
    "request.headers" + '["a"]' * 3000,
    "size(" * 3000 + '"a"' + ")" * 3000,
    "(" * 100000,
])
def test_absurd_nesting_is_a_compile_error_or_compiles_never_a_crash(text: str) -> None:
    compiles_or_refuses(text)
