"""Config errors that name file, line, object and field: ``FILE:LINE: kind/name: field: msg``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from mixerhub.config.files import ConfigError, Document, LineDict


class ConfigErrors(ConfigError):
    """All the errors of one load, one per line."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


def line_of(body: Any, loc: Sequence[Any], default: int) -> int:
    """The line of the deepest key of ``loc`` found in ``body``."""
    line, node = default, body
    for part in loc:
        if isinstance(node, LineDict):
            line = node.line_of(part) if part in node else node.line
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            if isinstance(node, LineDict):
                line = node.line
        else:
            break
    return line


def field_path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Reporter:
    """Collects the errors of one document as it is validated."""

    def __init__(self, doc: Document, body: Any, kind: str, name: str,
                 into: list[str]) -> None:
        self.doc, self.body, self.kind, self.name = doc, body, kind, name
        self.into = into

    def error(self, loc: Sequence[Any], message: str,
              line_loc: Sequence[Any] | None = None) -> None:
        line = line_of(self.body, loc if line_loc is None else line_loc, self.doc.line)
        path = field_path(loc)
        where = f"{self.doc.path}:{line}: {self.kind}/{self.name}"
        self.into.append(f"{where}: {path}: {message}" if path else f"{where}: {message}")

    def validation(self, exc: ValidationError, prefix: Sequence[Any] = ()) -> None:
        for e in exc.errors():
            loc = (*prefix, *e["loc"])
            if e["type"] == "extra_forbidden":
                self.error(loc[:-1], f"unknown key {str(loc[-1])!r}", line_loc=loc)
            elif e["type"] == "missing":
                self.error(loc, "required")
            else:
                self.error(loc, _message(e))


def _message(e: Any) -> str:
    msg = str(e["msg"])
    return msg.removeprefix("Value error, ")
