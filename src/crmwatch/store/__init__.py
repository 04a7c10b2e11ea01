"""Storage: one interface (base.Store), two backends."""

from __future__ import annotations

from typing import Any


def open_store(url: str) -> Any:
    """The store for a database URL: `postgresql://...` or a SQLite file/URL."""
    if url.startswith(("postgres://", "postgresql://")):
        from crmwatch.store.postgres import PostgresStore

        return PostgresStore(url)
    from crmwatch.store.sqlite import SQLiteStore

    return SQLiteStore(url)
