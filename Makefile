# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast install install-dev lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-dev: $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	bash scripts/ensure-chromium.sh

## Set up and run the server on SQLite with a demo user; prints a working curl example.
run: install
	$(BIN)/usageledger serve --demo

## Format, lint and type-check (mypy --strict, from pyproject.toml) the package, the tests'
## harness and benchmarks (bench/) and the scripts.
lint: install-dev
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy src bench scripts

## Set up everything and run the whole test suite (PostgreSQL tests included when reachable).
test: lint
	rm -rf .test-logs
	USAGELEDGER_TEST_LOG_DIR=$(CURDIR)/.test-logs $(BIN)/pytest

## The inner loop: lint, then every test but the browser and the slow end-to-end ones.
test-fast: lint
	$(BIN)/pytest -q -m "not browser and not slow"

bench: install-dev
	$(BIN)/python -m bench
