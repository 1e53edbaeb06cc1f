# The two set-up commands of the README: `make run` and `make test`. Both install what
# they need into .venv (pip's cache keeps a warm machine fast).
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: run test install services protos bench bench-compare

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --progress-bar off --upgrade pip "setuptools>=77" wheel

install: $(BIN)/python
	@echo "installing mixerhub and its test tools into $(VENV)"
	$(BIN)/pip install -q --progress-bar off -e '.[test,fast,bench]' --no-build-isolation \
		--config-settings editable_mode=strict
	@# xds-protos ships an older copy of the OTLP protos (opentelemetry/proto/) and the
	@# wheel pip installs last wins: put opentelemetry-proto's own back for the tracing exporter.
	$(BIN)/pip install -q --progress-bar off --no-deps --force-reinstall "opentelemetry-proto==$$( \
		$(BIN)/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"

run: install
	$(BIN)/mixerhub serve --config examples/quickstart

# Real backends for the tests (tests/services/provision_*.sh: Redis, Kafka, OPA …).
services:
	@for script in tests/services/provision_*.sh; do \
		[ -e "$$script" ] || continue; \
		echo "provisioning $$(basename $$script .sh | sed 's/provision_//')"; \
		bash "$$script" || exit 1; \
	done

test: install services
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

protos: install
	$(BIN)/python -m mixerhub.api.protogen

bench: install services
	$(BIN)/python bench/expr_evals.py
	$(BIN)/python bench/check_inprocess.py
	$(BIN)/python bench/check_rps.py
	$(BIN)/python bench/quota_redis.py
	$(BIN)/python bench/opa_eval.py
	$(BIN)/python bench/kafka_records.py
	$(BIN)/python bench/diff_replay.py
	@command -v wrk >/dev/null || { echo "installing wrk (Debian)"; \
		if [ "$$(id -u)" = 0 ]; then apt-get install -y -q wrk; else sudo apt-get install -y -q wrk; fi; }
	$(BIN)/python bench/envoy_filters.py
	$(BIN)/python bench/proxy.py

# mixerhub side by side with its peers (bench/compare.py; ARGS="--quick" for a smoke run).
# The peers (fortio, OPA-Envoy, envoyproxy/ratelimit, the Rust CEL) are built on first use
# by bench/peers/provision_*.sh into ~/.cache/mixerhub; Go's caches keep a rebuild quick.
bench-compare: install services
	@command -v wrk >/dev/null || { echo "installing wrk (Debian)"; \
		if [ "$$(id -u)" = 0 ]; then apt-get install -y -q wrk; else sudo apt-get install -y -q wrk; fi; }
	$(BIN)/python bench/compare.py $(ARGS)
