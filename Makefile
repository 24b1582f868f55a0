# sitrep: the two commands are `make demo` and `make test`. Everything bootstraps .venv from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCKSUM := $(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
# The stamp names the venv's Python too: a venv whose interpreter is gone (a pyenv or distro upgrade) is rebuilt.
PYVER := -c 'import sys; print("%d.%d" % sys.version_info[:2])'
VENV_PY = $(shell $(BIN)/python $(PYVER) 2>/dev/null || echo none)
STAMP := $(VENV)/.installed-$(LOCKSUM)-$(VENV_PY)

.PHONY: demo test down bench bench-full chaos lint lock venv airflow

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { echo "sitrep needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1): run make PYTHON=python3.11 (or newer)" >&2; exit 1; }
	@# A venv cut short has no pip; one made by another Python (or whose Python is gone) is made again.
	@want=$$($(PYTHON) $(PYVER)); have=$$($(BIN)/python $(PYVER) 2>/dev/null); \
	 if [ "$$want" != "$$have" ] || ! $(BIN)/python -m pip --version >/dev/null 2>&1; then $(PYTHON) -m venv --clear $(VENV); fi
	@echo "Installing pinned dependencies into $(VENV) (requirements.lock)..."
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-* && touch $(VENV)/.installed-$(LOCKSUM)-$$($(BIN)/python $(PYVER))

demo: $(STAMP)
	$(BIN)/sitrep demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Stops what runs without installing anything first (a changed lock must not stand between you and a stop).
down:
	@if [ -x $(BIN)/sitrep ]; then $(BIN)/sitrep airflow stop; status=$$?; $(BIN)/sitrep db stop && exit $$status; \
	 else echo "nothing to stop: $(VENV) is not installed"; fi

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
	$(BIN)/python -m mypy

# Regenerate requirements.lock from pyproject.toml in a throwaway venv (needs the package registry).
lock:
	rm -rf /tmp/sitrep-lock && $(PYTHON) -m venv /tmp/sitrep-lock
	/tmp/sitrep-lock/bin/pip install --quiet --disable-pip-version-check ".[test]" "setuptools==80.9.0"
	/tmp/sitrep-lock/bin/pip freeze --all --exclude sitrep --exclude pip | LC_ALL=C sort -f > requirements.lock
