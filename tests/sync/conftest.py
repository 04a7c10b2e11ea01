"""Sync fixtures: a mirror database of each kind, a server with short channel lifetimes."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_DELIVERY, Live, start_server

_names = itertools.count()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def mirror_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty mirror database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mirror.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    name = f"mirror{os.getpid()}_{next(_names)}"

    async def create() -> None:
        import asyncpg

        conn = await asyncpg.connect(cluster.dsn())
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(create())
    return str(cluster.dsn(name))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Live]:
    """A server on SQLite delivering fast (the mirror's kind is what these tests vary)."""
    live = start_server(f"sqlite:///{tmp_path / 'crm.db'}", **FAST_DELIVERY)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def server_api(server: Live) -> Iterator[Any]:
    with server.http() as client:
        yield client
