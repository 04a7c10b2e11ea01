"""Named SQL blocks, loaded once per dialect (procrastinate's `sql/queries.sql` pattern)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_BLOCK = re.compile(r"^-- (\w+) --$", re.MULTILINE)


def _parse(text: str) -> dict[str, str]:
    parts = _BLOCK.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


DIALECTS = ("sqlite", "postgres")


@cache
def queries(dialect: str) -> dict[str, str]:
    """Every block for `dialect` ('sqlite' or 'postgres'), overrides applied.

    Shared blocks live in `<topic>.sql`; a block of the same name in `sqlite.sql`,
    `postgres.sql` or `<topic>.<dialect>.sql` overrides it for that backend.
    """
    base = resources.files(__package__)
    files = sorted(e.name for e in base.iterdir() if e.name.endswith(".sql"))
    blocks: dict[str, str] = {}
    for name in files:
        if not any(name == f"{d}.sql" or name.endswith(f".{d}.sql") for d in DIALECTS):
            for key, body in _parse(base.joinpath(name).read_text("utf-8")).items():
                if key in blocks:
                    raise ValueError(f"SQL block {key} defined twice")
                blocks[key] = body
    for name in files:
        if name == f"{dialect}.sql" or name.endswith(f".{dialect}.sql"):
            blocks.update(_parse(base.joinpath(name).read_text("utf-8")))
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
