"""The documentation site: it builds without a warning, every page is in the nav, every
command and adapter is documented, and the generated reference matches the code."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixerhub import docgen
from mixerhub.plugins import ENTRY_POINT_GROUP, load_plugins

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"


def nav_pages(entries: Any) -> Iterator[str]:
    """Every page path the nav lists, depth first."""
    for entry in entries:
        if isinstance(entry, str):
            yield entry
        elif isinstance(entry, dict):
            for value in entry.values():
                yield from ([value] if isinstance(value, str) else nav_pages(value))


@pytest.fixture(scope="module")
def nav() -> list[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return list(nav_pages(config["nav"]))


def prose_pages() -> dict[str, str]:
    """Pages written by hand (the generated reference left out), by path under docs/."""
    return {p.relative_to(DOCS).as_posix(): p.read_text() for p in sorted(DOCS.rglob("*.md"))
            if REFERENCE not in p.parents}


def commands() -> list[str]:
    return [c for c, _, _ in docgen.subcommands(docgen.parser_without_environment())]


def entry_point_adapters() -> list[str]:
    """Adapter names registered by the modules of mixerhub's own entry points."""
    names: list[str] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None and ep.dist.name == "mixerhub":
            names += load_plugins(extra=[ep.load()], entry_points=False).adapters.names()
    return sorted(names)


def test_mkdocs_build_strict_has_no_warnings(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert [line for line in output.splitlines() if "WARNING" in line] == []
    assert (tmp_path / "site" / "reference" / "config.html").exists()


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page(nav: list[str]) -> None:
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(set(pages) - set(nav)) == []
    assert len(nav) == len(set(nav)), "a page is listed twice"
    missing = [p for p in nav if not (DOCS / p).exists()]
    assert missing == [], f"in the nav but not in docs/: {missing}"


def test_every_command_has_a_reference_entry_and_a_prose_page() -> None:
    reference = (REFERENCE / "cli.md").read_text()
    prose = prose_pages()
    undocumented = []
    for command in commands():
        assert f"\n## {command}\n" in reference, command
        pattern = re.compile(rf"{re.escape(command)}(?![\w-])")
        if not any(pattern.search(text) for text in prose.values()):
            undocumented.append(command)
    assert undocumented == [], f"no page outside docs/reference/ mentions {undocumented}"
    assert len(commands()) >= 10


def test_every_adapter_has_a_page_in_the_nav_and_a_reference_section(nav: list[str]) -> None:
    adapters = entry_point_adapters()
    reference = (REFERENCE / "config.md").read_text()
    assert {"denier", "listchecker", "memquota", "opa"} <= set(adapters)
    for name in adapters:
        assert (DOCS / "adapters" / f"{name}.md").exists(), name
        assert f"adapters/{name}.md" in nav, name
        assert f"\n### {name}\n" in reference, name


def test_the_generated_reference_is_up_to_date() -> None:
    out_of_date = [p.as_posix() for p in docgen.stale()]
    assert out_of_date == [], f"run: {docgen.REGENERATE}"
    for page in ("config.md", "cli.md"):
        assert docgen.REGENERATE in (REFERENCE / page).read_text().splitlines()[0]


def test_generation_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = docgen.generate()
    monkeypatch.setenv("MIXERHUB_GRPC", "0.0.0.0:1")
    monkeypatch.setenv("MIXERHUB_DEFAULT_NAMESPACE", "elsewhere")
    monkeypatch.setenv("COLUMNS", "40")
    assert docgen.generate() == before
    assert "0.0.0.0:1" not in before[docgen.CLI_PAGE]


def test_check_fails_on_a_stale_page_and_write_repairs_it(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    assert docgen.main(["--write", "--docs", str(docs)]) == 0
    assert docgen.main(["--check", "--docs", str(docs)]) == 0
    page = docs / docgen.CLI_PAGE
    page.write_text(page.read_text().replace("--cache-size", "--cache-sise"))
    assert docgen.main(["--check", "--docs", str(docs)]) == 1
    assert docgen.stale(docs) == [docgen.CLI_PAGE]


def test_the_config_reference_documents_params_fields_defaults_and_constraints() -> None:
    text = (REFERENCE / "config.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `validUseCount` |"))
    assert row == ("| `validUseCount` | integer | `1000` | How many times a caller may reuse the "
                   "answer | ≥ 0 |")
    assert "| `failPolicy` | one of `open`, `closed` (or null) | `null` |" in text
    assert "(also accepted: `outputStream`)" in text  # stdio's other key for logStream


def test_docs_name_no_machine_paths() -> None:
    # The folders of the machine the docs were built on: the checkout's parent, the home
    # folder, and the temporary folder examples were once run in.
    machine = {str(ROOT.parent), str(Path.home()), tempfile.gettempdir()}
    for name, text in {**prose_pages(), "mkdocs.yml": (ROOT / "mkdocs.yml").read_text()}.items():
        for folder in machine:
            assert f"{folder}/" not in text, (name, folder)
