"""Mixer's expression language (CEXL), compiled once into fast Python callables.

    from mixerhub.expr import compile_expression
    allowed = compile_expression('request.headers["x-user"] == "alice"')
    allowed.type        # ValueType.BOOL
    allowed(bag)        # True / False, or raises EvaluationError; look-ups land in bag.refs

See docs/expressions.md for the language.
"""

from __future__ import annotations

from mixerhub.expr.compiled import CompiledExpression, compile_expression, compile_map
from mixerhub.expr.errors import EvaluationError, ExpressionCompileError

__all__ = ["CompiledExpression", "EvaluationError", "ExpressionCompileError", "compile_expression",
           "compile_map"]
