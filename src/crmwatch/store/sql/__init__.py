"""Named SQL blocks, loaded once per dialect (procrastinate's `sql/queries.sql` pattern)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_BLOCK = re.compile(r"^-- (\w+) --$", re.MULTILINE)


def _parse(text: str) -> dict[str, str]:
    parts = _BLOCK.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@cache
def queries(dialect: str) -> dict[str, str]:
    """Every block for `dialect` ('sqlite' or 'postgres'), overrides applied."""
    base = resources.files(__package__)
    blocks = _parse(base.joinpath("queries.sql").read_text("utf-8"))
    blocks.update(_parse(base.joinpath(f"{dialect}.sql").read_text("utf-8")))
    if dialect == "sqlite":
        blocks = {k: re.sub(r"\$(\d+)", r"?\1", v) for k, v in blocks.items()}
    return blocks


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """The forward-only migrations for `dialect`: (number, file name, SQL), in order."""
    folder = resources.files("crmwatch.store").joinpath("migrations", dialect)
    found = []
    for entry in folder.iterdir():
        m = re.match(r"^(\d{4})_\w+\.sql$", entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text("utf-8")))
    return sorted(found)
