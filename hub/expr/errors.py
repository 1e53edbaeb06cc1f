"""The two ways an expression fails: at compile time (config) or at evaluation (request).

A compile error is the author's mistake and is reported when the config loads; an evaluation
error depends on the request's attributes and follows the rule's fail policy.
"""

from __future__ import annotations

import grpc

from mixerhub.errors import MixerhubError


class ExpressionCompileError(MixerhubError):
    """The text is not a valid expression for the manifest: syntax, names or types.

    ``position`` is the 0-based column of the offending part when one can be pointed at.
    """

    code = "expression_compile_error"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, *, position: int | None = None, text: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.text = text

    def pointer(self) -> str:
        """The message, the source line and a caret under the offending column."""
        if self.text is None or self.position is None or "\n" in self.text:
            return self.message
        return f"{self.message}\n  {self.text}\n  {' ' * self.position}^"


class EvaluationError(MixerhubError):
    """An expression could not be evaluated on a bag (missing attribute, bad value, bad argument).

    ``attribute`` names the attribute involved when there is one.
    """

    code = "evaluation_error"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, *, attribute: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.attribute = attribute
