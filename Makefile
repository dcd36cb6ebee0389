# Every target does its own set-up (apt packages, virtualenv, pip) through scripts/bootstrap.
VENV := .venv
BIN := $(VENV)/bin
# `sam build` looks for python3.13 on PATH.
export PATH := $(abspath $(BIN)):$(dir $(shell scripts/find-python 2>/dev/null)):$(PATH)

.PHONY: bootstrap demo test lint typecheck unit bench build clean

bootstrap:
	@scripts/bootstrap

demo: bootstrap
	$(BIN)/python -m devkit.demo

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: bootstrap
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

unit: bootstrap
	$(BIN)/python -m pytest -q tests/unit

bench: bootstrap
	$(BIN)/python -m bench.run

build: bootstrap
	$(BIN)/sam build

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
