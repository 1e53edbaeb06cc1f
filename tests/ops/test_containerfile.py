"""The Containerfile, read statically (no image builder is needed): what it copies exists
and is not ignored, what it runs is a real `mixerhub serve` command line, and its ports,
health check and default config agree with the hub."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

import pytest

from tests.ops.manifests import ROOT, hub_routes, port_of, serve_help_flags, validate_config


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Containerfile, continuation lines joined."""
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Containerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        lines.append((word.upper(), rest.strip()))
    return lines


INSTRUCTIONS = _instructions()


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for word, rest in INSTRUCTIONS:
        if word == "FROM":
            stages.append([])
        stages[-1].append((word, rest))
    return stages


def _exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), f"use the exec form: {rest}"
    return value


def _final(word: str) -> str:
    return [rest for w, rest in _stages()[-1] if w == word][-1]


def _ignored(path: str) -> bool:
    """Whether .containerignore keeps ``path`` out of the build context (its last
    matching pattern decides; ``!`` re-includes)."""
    ignored = False
    for pattern in (ROOT / ".containerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or \
                any(fnmatch.fnmatch(part, pattern) for part in parts):
            ignored = not negate
    return ignored


def test_two_stages_on_python_311_slim() -> None:
    froms = [rest.split()[0] for word, rest in INSTRUCTIONS if word == "FROM"]
    assert froms == ["python:3.11-slim", "python:3.11-slim"]


def test_the_build_stage_compiles_and_checks_every_c_extension() -> None:
    """setup.py's extensions are optional (an install without a compiler goes on in pure
    Python): the image must have a compiler and fail to build without them."""
    extensions = re.findall(r'Extension\(\s*"([\w.]+)"', (ROOT / "setup.py").read_text())
    assert len(extensions) >= 2
    runs = " ".join(rest for word, rest in _stages()[0] if word == "RUN")
    assert "gcc" in runs.split() and "libc6-dev" in runs.split()
    imported = re.search(r'python -c "import ([^"]+)"', runs)
    assert imported, "the build stage does not import the extensions"
    assert set(extensions) <= {name.strip() for name in imported.group(1).split(",")}


def test_every_copied_source_exists_and_is_in_the_build_context() -> None:
    sources = []
    for word, rest in INSTRUCTIONS:
        if word not in ("COPY", "ADD"):
            continue
        args = shlex.split(rest)
        if any(a.startswith("--from=") for a in args):
            continue
        sources += [a for a in args[:-1] if not a.startswith("--")]
    assert {"pyproject.toml", "setup.py", "hub/", "examples/quickstart/policy.yaml"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not _ignored(source.rstrip("/")), f"COPY {source}: excluded by .containerignore"
    readme = ROOT / "pyproject.toml"
    assert 'readme = "README.md"' in readme.read_text() and "README.md" in sources


def test_the_ignore_files_agree_and_keep_the_tree_out() -> None:
    assert (ROOT / ".containerignore").read_text() == (ROOT / ".dockerignore").read_text()
    for path in (".git", ".venv", "tests", "examples/kubernetes", "hub/__pycache__"):
        assert _ignored(path), path
    assert not _ignored("examples/quickstart/policy.yaml")


def test_the_final_stage_runs_mixerhub_serve_as_a_non_root_user() -> None:
    user = _final("USER").split(":")[0]
    assert user not in ("", "0", "root")
    entrypoint = _exec_form(_final("ENTRYPOINT"))
    assert entrypoint == ["mixerhub", "serve"]
    from mixerhub.cli import build_parser

    cmd = _exec_form(_final("CMD"))
    unknown = {a.split("=")[0] for a in cmd if a.startswith("--")} - serve_help_flags()
    assert not unknown
    args = build_parser().parse_args([*entrypoint[1:], *cmd])
    assert args.func.__name__ == "_serve"
    exposed = sorted(int(p.split("/")[0]) for p in _final("EXPOSE").split())
    assert exposed == sorted([port_of(args.grpc), port_of(args.http)]) == [9091, 9093]
    assert args.grpc.startswith("0.0.0.0:") and args.http.startswith("0.0.0.0:")


def test_the_default_config_is_the_quickstart_and_valid(tmp_path: Path) -> None:
    from mixerhub.cli import build_parser

    args = build_parser().parse_args(
        [*_exec_form(_final("ENTRYPOINT"))[1:], *_exec_form(_final("CMD"))])
    (config,) = args.config
    copies = [shlex.split(rest) for word, rest in _stages()[-1] if word == "COPY"]
    baked = [c for c in copies if c[-1].startswith(config.rstrip("/") + "/")]
    assert baked, f"nothing is copied into {config}"
    for copy in baked:
        source = ROOT / copy[-2]
        assert source.parent == ROOT / "examples" / "quickstart"
        (tmp_path / Path(copy[-1]).name).write_text(source.read_text())
    result = validate_config(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_healthcheck_asks_a_route_of_the_http_port() -> None:
    from mixerhub.cli import build_parser

    args = build_parser().parse_args(
        [*_exec_form(_final("ENTRYPOINT"))[1:], *_exec_form(_final("CMD"))])
    check = _final("HEALTHCHECK")
    assert "CMD" in check
    command = _exec_form(check.split("CMD", 1)[1].strip())
    url = next(part for part in command if "http://" in part)
    address = url.split("http://", 1)[1].split("/", 1)
    path = "/" + address[1].split("'", 1)[0]
    host_port = address[0]
    assert port_of(host_port) == port_of(args.http)
    assert path in hub_routes() and path == "/healthz"
    assert command[0] == "python", "the slim image has no curl"


@pytest.mark.parametrize("word", ["ENTRYPOINT", "CMD"])
def test_exec_form_so_signals_reach_the_hub(word: str) -> None:
    """A shell form would run the hub under /bin/sh, which does not pass SIGTERM on."""
    _exec_form(_final(word))
