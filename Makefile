# Decapod: the commands the README names.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench install dist clean

$(STAMP): pyproject.toml
	@echo "installing dependencies into $(VENV) (about a minute, the first time only)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

## run: set up (once) and start the gateway on the embedded defaults (~/.decapod)
run: $(STAMP)
	$(BIN)/decapod run

## test: the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

## lint: ruff (lint + format check), mypy, and the dependency rules (import-linter contracts)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: the performance figures (not tests; prints a table, writes bench/results.json)
bench: $(STAMP)
	$(BIN)/python -m bench

## dist: the wheel and the sdist in dist/, checked as PyPI would (twine check --strict)
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
