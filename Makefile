# The Transformer, explained by detectives.
#   make book   build the HTML book into _build/html (creates .venv on first use)
#   make test   run the whole test suite (what CI runs)
#   make bench  run the benchmarks (bench/README.md)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
# nbgrader shells out to `jupyter` and `alembic`: the environment's bin must come first.
export PATH := $(BIN):$(PATH)
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help env book book-clean test test-fast bench lab release chromium clean

help:
	@sed -n '2,5p' Makefile

env: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@echo ">>> creating the virtual environment in $(VENV) (first run: ~2 minutes)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

book: env
	$(BIN)/python -m course.book build

book-clean:
	rm -rf _build .jupyter_cache

# Headless Chromium for the browser tests (Debian package; never `playwright install`).
chromium:
	@command -v chromium >/dev/null || { echo ">>> installing chromium (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: env chromium
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# Everything except the book build and browser tests (a few minutes).
test-fast: env
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not browser"

# Benchmarks (not tests): figures and ratios against the targets, written to bench-results/.
bench: env
	$(BIN)/python bench/run_all.py

lab: env
	$(BIN)/jupyter lab exercises

release: env
	for a in $$(ls solutions); do $(BIN)/nbgrader generate_assignment $$a --force; done

clean: book-clean
	rm -rf $(VENV) .pytest_cache .hypothesis test-artifacts
