"""Finding and reading config files: a path is a file or a directory of ``*.yaml``/``*.yml``.

Documents keep their file and line so every later error can name them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import yaml

from mixerhub.errors import MixerhubError


class LineDict(dict[str, Any]):
    """A YAML mapping that remembers its line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> Any:
    data = LineDict()
    data.line = node.start_mark.line + 1
    data.key_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
    yield data
    # LineDict keys its values by text, as config and test files do (the stub: Hashable)
    data.update(cast("dict[str, Any]", loader.construct_mapping(node)))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)


class ConfigError(MixerhubError):
    """Config that cannot be used; the message starts with ``FILE:LINE:``."""

    code = "config_error"


@dataclasses.dataclass(frozen=True, slots=True)
class Document:
    """One YAML document of a config file."""

    path: str
    line: int  # 1-based line of the document's first node
    index: int  # 0-based position in its file
    body: Any


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files in the order given; a directory adds its YAML files sorted by name."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            # *_test.yaml files are `mixerhub test` cases (docs/testing-policies.md), not config
            out.extend(sorted(p for p in path.iterdir()
                              if p.suffix in (".yaml", ".yml") and p.is_file()
                              and not p.name.startswith(".") and not p.name.endswith("_test.yaml")))
        elif path.is_file():
            out.append(path)
        else:
            raise ConfigError(f"{path}: no such file or directory")
    return out


def read_documents(path: Path) -> list[Document]:
    """Parse every non-empty document of one file, with its first line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    docs = []
    loader = _LineLoader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                body = loader.construct_document(node)
                if body is not None:
                    docs.append(Document(str(path), node.start_mark.line + 1, index, body))
            index += 1
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}:" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{line} invalid YAML: {reason}") from None
    finally:
        loader.dispose()
    return docs


def read_all(paths: Iterable[str | Path]) -> list[Document]:
    return [doc for path in expand_paths(paths) for doc in read_documents(path)]
