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
	$(VENV)/bin/ruff check src tests bench

format: install
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

mypy: install
	$(VENV)/bin/mypy

bench: install
	$(PY) bench/records_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
