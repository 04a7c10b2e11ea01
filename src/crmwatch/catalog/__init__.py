"""Zoho CRM's standard modules, in the schema format of docs/schema.md."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml

from crmwatch.domain.modules import Module, check_references, load_modules


def read_document(path: str | Path) -> Any:
    """A schema document from a YAML or JSON file."""
    text = Path(path).read_text("utf-8")
    if str(path).endswith(".json"):
        return orjson.loads(text)
    return yaml.safe_load(text)


@cache
def _standard_doc() -> Any:
    return yaml.safe_load(resources.files(__package__).joinpath("standard.yaml")
                          .read_text("utf-8"))


def standard_modules() -> list[Module]:
    modules = load_modules(_standard_doc())
    check_references(modules)
    return modules
