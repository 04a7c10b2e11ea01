"""Fixtures for the third-party client tests; see harness.py. Run with `make clients-test`.

The client interpreters live in `.venv-airbyte` and `.venv-zoho` (or CRMWATCH_AIRBYTE_PYTHON /
CRMWATCH_ZOHO_PYTHON). When one is missing the tests that need it are skipped, or fail when
CRMWATCH_CLIENTS_TEST=1 (as `make clients-test` sets it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients_extra.harness import AIRBYTE_PYTHON, BIG, ZOHO_PYTHON, prepare

TIMINGS: list[tuple[str, float]] = []


def _require(python: Path, what: str) -> None:
    if python.exists():
        return
    message = f"{what}: no {python}; `make clients-test` creates it"
    if os.environ.get("CRMWATCH_CLIENTS_TEST") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def airbyte_python() -> Path:
    _require(AIRBYTE_PYTHON, "airbyte-source-zoho-crm 0.3.6 (Python 3.11)")
    return AIRBYTE_PYTHON


@pytest.fixture(scope="session")
def zoho_python() -> Path:
    _require(ZOHO_PYTHON, "zoho 0.1.3 (Python 3.12)")
    return ZOHO_PYTHON


@pytest.fixture(scope="session")
def big_database(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """A database file with BIG Leads; each test starts its own server on it."""
    return prepare(tmp_path_factory.mktemp("big"), {"Leads": BIG})


@pytest.fixture
def timing() -> Iterator[list[tuple[str, float]]]:
    """Append (label, seconds) to have it printed in the summary at the end."""
    yield TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("client run times")
        for label, seconds in TIMINGS:
            terminalreporter.write_line(f"{seconds:8.2f} s  {label}")
