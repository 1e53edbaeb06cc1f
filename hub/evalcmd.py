"""``mixerhub eval``: compile and evaluate one expression, or run a case file.

    mixerhub eval 'request.headers["x-user"] | "anonymous"' --attributes '{"request.headers": {}}'
    mixerhub eval --cases tests/data/cexl_conformance.yaml [--verbose]

The same compiler as the hub; attributes in the JSON form of docs/json.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from mixerhub.attributes.bag import AttributeBag
from mixerhub.attributes.types import Manifest, default_manifest, parse_manifest_documents
from mixerhub.errors import MixerhubError
from mixerhub.expr import EvaluationError, ExpressionCompileError, compile_expression
from mixerhub.expr.cases import FAILED, PASSED, SKIPPED, run_case_file, summarize
from mixerhub.jsonform import to_json, values_from_json


def load_manifest(path: str | None) -> Manifest:
    """Istio's manifests plus mixerhub's, and those of ``path`` (attributemanifest YAML)."""
    manifest = dict(default_manifest())
    if path:
        text = Path(path).read_text(encoding="utf-8")
        manifest.update(parse_manifest_documents(list(yaml.safe_load_all(text))))
    return manifest


def read_attributes(arg: str | None) -> Any:
    """JSON text, or ``@FILE`` holding it."""
    if not arg:
        return {}
    text = Path(arg[1:]).read_text(encoding="utf-8") if arg.startswith("@") else arg
    return json.loads(text)


def eval_one(expr: str, attributes: str | None, manifest_path: str | None,
             out: TextIO = sys.stdout) -> int:
    manifest = load_manifest(manifest_path)
    try:
        compiled = compile_expression(expr, manifest)
    except ExpressionCompileError as exc:
        out.write(f"compile error: {exc.pointer()}\n")
        return 1
    try:
        bag = AttributeBag(values_from_json(read_attributes(attributes), manifest))
    except (MixerhubError, ValueError, OSError) as exc:
        out.write(f"bad --attributes: {exc}\n")
        return 2
    out.write(f"type: {compiled.type.value}\n")
    try:
        value = compiled(bag)
    except EvaluationError as exc:
        out.write(f"evaluation error: {exc}\n")
        status = 1
    else:
        out.write(f"value: {json.dumps(to_json(value))}\n")
        status = 0
    refs = sorted(r.notation() for r in bag.references(keyed=True))
    out.write(f"referenced: {', '.join(refs) if refs else '(none)'}\n")
    return status


def eval_cases(path: str, verbose: bool, out: TextIO = sys.stdout) -> int:
    results = run_case_file(path)
    for r in results:
        if r.status == FAILED and verbose:
            out.write(f"FAILED #{r.id} {r.expr}\n  {r.reason}\n  expected: {r.expected}\n"
                      f"  actual:   {r.actual}\n")
    counts = summarize(results)
    out.write(f"{counts.get(PASSED, 0)} passed, {counts.get(FAILED, 0)} failed, "
              f"{counts.get(SKIPPED, 0)} skipped\n")
    return 1 if counts.get(FAILED, 0) else 0
