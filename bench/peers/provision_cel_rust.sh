#!/usr/bin/env bash
# The Rust CEL (PyPI `common-expression-language`) for bench/compare.py's expression row, in
# a venv of its own: it imports as `cel`, a top-level name that xds-protos (a mixerhub
# dependency) also ships, so the two cannot share the project's venv. compare.py runs
# bench/_cel_rust.py with this venv's interpreter. Idempotent; pip's cache keeps it quick.
set -euo pipefail

CEL_RUST_VERSION=0.10.0
DEST="${XDG_CACHE_HOME:-$HOME/.cache}/mixerhub/cel-rust-$CEL_RUST_VERSION"
PY="$DEST/bin/python"

if [ -x "$PY" ] && "$PY" -c "import cel" 2>/dev/null; then
    echo "cel-rust: common-expression-language $CEL_RUST_VERSION already installed"
    exit 0
fi
echo "cel-rust: creating a venv for common-expression-language $CEL_RUST_VERSION"
rm -rf "$DEST"
"${PYTHON:-python3}" -m venv "$DEST"
"$PY" -m pip install -q --progress-bar off "common-expression-language==$CEL_RUST_VERSION"
echo "cel-rust: common-expression-language $CEL_RUST_VERSION ready"
