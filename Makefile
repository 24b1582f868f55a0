# sitrep: the two commands are `make demo` and `make test`. Everything bootstraps .venv from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test down bench bench-full chaos lint lock venv airflow

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)  # a venv cut short has no pip
	@echo "Installing pinned dependencies into $(VENV) (requirements.lock)..."
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/sitrep demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

down: $(STAMP)
	$(BIN)/sitrep airflow stop
	$(BIN)/sitrep db stop

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-full: $(STAMP)
	$(BIN)/python -m bench --full $(BENCH_ARGS)

chaos: $(STAMP)
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

airflow: $(STAMP)
	$(BIN)/sitrep airflow

lint: $(STAMP)
	$(BIN)/ruff check plugins dags tests bench

# Regenerate requirements.lock from pyproject.toml in a throwaway venv (needs the package registry).
lock:
	rm -rf /tmp/sitrep-lock && $(PYTHON) -m venv /tmp/sitrep-lock
	/tmp/sitrep-lock/bin/pip install --quiet --disable-pip-version-check ".[test]" "setuptools==80.9.0"
	/tmp/sitrep-lock/bin/pip freeze --all --exclude sitrep --exclude pip | LC_ALL=C sort -f > requirements.lock
