"""Tokens of CEXL. The lexical rules are Go's (Mixer parsed expressions with Go's parser),
with one addition: single-quoted literals may hold any number of characters.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from mixerhub.expr.errors import ExpressionCompileError

# Longest first, so "||" wins over "|" and "&^" over "&".
_OPERATORS = (
    "||", "&&", "==", "!=", "<=", ">=", "<<", ">>", "&^",
    "<", ">", "!", "+", "-", "*", "/", "%", "|", "&", "^", "(", ")", "[", "]", ",", ".", "=",
)  # fmt: skip
_OPERATOR = re.compile("|".join(re.escape(op) for op in _OPERATORS))
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = "0123456789"
_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", '"': '"', "'": "'",
}  # fmt: skip
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class Token(NamedTuple):
    kind: str  # "int", "float", "string", "ident", "op" or "eof"
    text: str  # the source text of the token
    pos: int  # 0-based column of its first character
    value: object = None  # the parsed literal for int, float and string tokens


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text``, ending with an "eof" token."""
    tokens: list[Token] = []
    pos = 0
    while True:
        pos = _skip_space(text, pos)
        if pos >= len(text):
            tokens.append(Token("eof", "", len(text)))
            return tokens
        token = _next_token(text, pos)
        tokens.append(token)
        pos += len(token.text)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _next_token(text: str, pos: int) -> Token:
    char = text[pos]
    if char.isalpha() or char == "_":
        return _identifier(text, pos)
    if char in _DIGITS or (char == "." and text[pos + 1 : pos + 2] in tuple(_DIGITS)):
        return _number(text, pos)
    if char in "\"'":
        return _quoted(text, pos)
    if char == "`":
        return _raw(text, pos)
    operator = _OPERATOR.match(text, pos)
    if operator is not None:
        return Token("op", operator.group(), pos)
    shown = f" '{char}'" if char.isprintable() else ""
    raise ExpressionCompileError(f"illegal character U+{ord(char):04X}{shown}", position=pos, text=text)


def _identifier(text: str, pos: int) -> Token:
    end = pos
    while end < len(text) and (text[end].isalnum() or text[end] == "_"):
        end += 1
    return Token("ident", text[pos:end], pos)


def _number(text: str, pos: int) -> Token:
    found = _NUMBER.match(text, pos)
    assert found is not None  # _next_token only calls this on a digit or ".digit"
    end = found.end()
    if end < len(text) and (text[end].isalnum() or text[end] == "_"):
        while end < len(text) and (text[end].isalnum() or text[end] in "_."):
            end += 1
        raise ExpressionCompileError(
            f"invalid number '{text[pos:end]}': only decimal numbers are supported",
            position=pos,
            text=text,
        )
    literal = found.group()
    if any(c in literal for c in ".eE"):
        return Token("float", literal, pos, float(literal))
    return Token("int", literal, pos, int(literal))


def _quoted(text: str, pos: int) -> Token:
    quote, out, at = text[pos], [], pos + 1
    while at < len(text) and text[at] != quote:
        if text[at] == "\n":
            break
        if text[at] == "\\":
            char, at = _escape(text, at)
            out.append(char)
        else:
            out.append(text[at])
            at += 1
    if at >= len(text) or text[at] != quote:
        raise ExpressionCompileError("string literal not terminated", position=pos, text=text)
    return Token("string", text[pos : at + 1], pos, "".join(out))


def _escape(text: str, at: int) -> tuple[str, int]:
    """The character of the escape sequence starting at the backslash ``at``, and the next index."""
    code = text[at + 1 : at + 2]
    if code in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[code], at + 2
    if code in _HEX_ESCAPES:
        return _numeric_escape(text, at, text[at + 2 : at + 2 + _HEX_ESCAPES[code]], 16)
    if code in tuple("01234567"):
        return _numeric_escape(text, at, text[at + 1 : at + 4], 8)
    raise ExpressionCompileError(f"unknown escape sequence '\\{code}'", position=at, text=text)


def _numeric_escape(text: str, at: int, digits: str, base: int) -> tuple[str, int]:
    width = {16: {"x": 2, "u": 4, "U": 8}.get(text[at + 1], 0), 8: 3}[base]
    try:
        value = int(digits, base) if len(digits) == width else -1
    except ValueError:
        value = -1
    if value < 0 or value > 0x10FFFF or 0xD800 <= value <= 0xDFFF or (base == 8 and value > 255):
        raise ExpressionCompileError(f"invalid escape sequence '{text[at : at + 2 + width]}'", position=at, text=text)
    return chr(value), at + 1 + width + (1 if base == 16 else 0)


def _raw(text: str, pos: int) -> Token:
    end = text.find("`", pos + 1)
    if end < 0:
        raise ExpressionCompileError("raw string literal not terminated", position=pos, text=text)
    raw = text[pos : end + 1]
    return Token("string", raw, pos, raw[1:-1].replace("\r", ""))
