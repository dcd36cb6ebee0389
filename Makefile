# Every target does its own set-up (apt packages, virtualenv, pip) through scripts/bootstrap.
VENV := .venv
BIN := $(VENV)/bin
# `sam build` looks for python3.13 on PATH.
export PATH := $(abspath $(BIN)):$(dir $(shell scripts/find-python 2>/dev/null)):$(PATH)

.PHONY: bootstrap demo test lint format typecheck unit functional integration bench build clean

bootstrap:
	@scripts/bootstrap

demo: bootstrap
	$(BIN)/python -m devkit.demo

# pre-commit runs these gates and `make typecheck` before each commit (.pre-commit-config.yaml).
lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: bootstrap
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: bootstrap
	$(BIN)/mypy

# Coverage of the library and handlers, in-process (commands run as subprocesses are not
# counted); the floor in pyproject.toml is the level measured when it was set.
test: lint typecheck
	$(BIN)/python -m pytest -q --cov --cov-report=term:skip-covered

# In-process and on in-memory fakes (tests/fakes.py): no moto, no subprocess, no server.
unit: bootstrap
	$(BIN)/python -m pytest -q tests/unit tests/infra

# The real adapters under moto's mock_aws, and the CLI run as a process.
functional: bootstrap
	$(BIN)/python -m pytest -q tests/functional

integration: bootstrap
	$(BIN)/python -m pytest -q tests/integration

bench: bootstrap
	$(BIN)/python -m bench.run

build: bootstrap
	$(BIN)/sam build

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .grimp_cache .import_linter_cache
