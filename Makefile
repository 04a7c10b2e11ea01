# Shortcuts; the README's two commands work without make.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test lint format mypy bench clients-test clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/crmwatch serve

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check src tests bench clients_extra

format: install
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

mypy: install
	$(VENV)/bin/mypy

bench: install
	$(PY) bench/records_bench.py

# Third-party clients (clients_extra/, not part of `make test` or CI): the Airbyte Zoho CRM
# connector on Python 3.11 and the async `zoho` SDK on Python 3.12, each in a throwaway venv,
# against a real `crmwatch serve`. PYTHON311 / PYTHON312 override the interpreters.
AIRBYTE_VENV := .venv-airbyte
ZOHO_VENV := .venv-zoho
find_python = $(firstword $(shell for c in python$(1) $$(pyenv root 2>/dev/null)/versions/$(1).*/bin/python$(1); do \
	$$c -c 'import sys; print(sys.executable)' 2>/dev/null && break; done))
PYTHON311 ?= $(call find_python,3.11)
PYTHON312 ?= $(call find_python,3.12)

$(AIRBYTE_VENV)/.installed:
	@test -n "$(PYTHON311)" || { echo "no Python 3.11 found: set PYTHON311=..." >&2; exit 1; }
	$(PYTHON311) -m venv --clear $(AIRBYTE_VENV)
	$(AIRBYTE_VENV)/bin/pip install -q airbyte-source-zoho-crm==0.3.6
	touch $@

$(ZOHO_VENV)/.installed:
	@test -n "$(PYTHON312)" || { echo "no Python 3.12 found: set PYTHON312=..." >&2; exit 1; }
	$(PYTHON312) -m venv --clear $(ZOHO_VENV)
	$(ZOHO_VENV)/bin/pip install -q zoho==0.1.3
	touch $@

clients-test: install $(AIRBYTE_VENV)/.installed $(ZOHO_VENV)/.installed
	CRMWATCH_CLIENTS_TEST=1 $(PY) -m pytest clients_extra

clean:
	rm -rf $(VENV) $(AIRBYTE_VENV) $(ZOHO_VENV) .pytest_cache .mypy_cache .ruff_cache
