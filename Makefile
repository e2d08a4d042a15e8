# One set of commands for developers and CI (.ci/run calls these targets).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: venv serve test test-all lint typecheck protos check bench clean

venv: $(BIN)/drover

$(BIN)/drover: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The quickstart: SQLite in ./state, the configs/ defaults, port $(PORT).
serve: venv
	$(BIN)/drover serve --port $(PORT) --state-dir state --config-dir configs

test: venv
	$(BIN)/pytest -q -n 2

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

protos: venv
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python tools/genprotos.py

check: lint typecheck test

# The benchmarks (bench/README.md): a smoke run of a few minutes; BENCH_ARGS=--full
# for the issue's sizes. Not part of check: timings are never asserted.
BENCH_ARGS ?=
bench: venv
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
