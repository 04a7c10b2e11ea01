"""The per-flow time budget: a write that runs too long is stopped and rolled back whole,
and the writes beside it go on; through the real server, and at the store."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from crmwatch.store import open_store
from crmwatch.store.base import BudgetExceeded, Dynamic, Emit, Query
from tests.conftest import start_server


def _count(n: int) -> Dynamic:
    """A SELECT that counts to `n` (a recursive CTE), on either backend."""
    return Dynamic(lambda dialect, start: (
        "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
        f"FROM c WHERE x < {n}) SELECT x FROM c) t", []), "val")


def _insert(record_id: int) -> Any:
    yield Query("insert_record", (record_id, 1, "Leads", None, "n", "{}", 0, 0))
    yield Emit(1, "Leads", record_id, "insert", "[]", "{}", "{}", 1, 0, 1)


def _written(record_id: int) -> Any:
    row = yield Query("get_record", (1, "Leads", record_id), "one")
    events = yield Query("changes", (1, 0, 10), "all")
    return row is not None, [e for e in events if int(e[2]) == record_id]


async def _open(url: str) -> Any:
    store = open_store(url)
    if hasattr(store, "run_sequencer"):
        store.run_sequencer = False
    await store.migrate()
    await store.start()
    return store


def test_many_statements_past_the_budget(database_url: str) -> None:
    """A flow that keeps going is stopped between two statements; what it wrote before is
    rolled back, and a write beside it commits."""
    def endless() -> Any:
        yield from _insert(101)
        while True:
            yield _count(20_000)

    async def main() -> tuple[float, Any, Any]:
        store = await _open(database_url)
        try:
            started = time.monotonic()
            slow = asyncio.ensure_future(store.write(endless(), budget_ms=300))
            other = await store.write(_insert(102), budget_ms=300)
            with pytest.raises(BudgetExceeded):
                await slow
            took = time.monotonic() - started
            assert other is None
            await store.sync_journal()
            return took, await store.read(_written(101)), await store.read(_written(102))
        finally:
            await store.close()

    took, slow, other = asyncio.run(main())
    assert took < 10
    assert slow == (False, [])
    assert other[0] is True and len(other[1]) == 1


def test_one_long_select_is_interrupted(sqlite_url: str) -> None:
    """SQLite: a single SELECT running past the budget is interrupted inside the writer
    (it would take minutes), and the other flows of the writer's group still commit."""
    def long_select() -> Any:
        yield from _insert(201)
        yield _count(10**10)

    async def main() -> tuple[float, Any, Any]:
        store = await _open(sqlite_url)
        try:
            started = time.monotonic()
            results = await asyncio.gather(
                store.write(_insert(202)), store.write(long_select(), budget_ms=300),
                store.write(_insert(203)), return_exceptions=True)
            took = time.monotonic() - started
            assert results[0] is None and results[2] is None
            assert isinstance(results[1], BudgetExceeded)
            return took, await store.read(_written(201)), [
                await store.read(_written(i)) for i in (202, 203)]
        finally:
            await store.close()

    took, slow, others = asyncio.run(main())
    assert took < 10
    assert slow == (False, [])
    assert all(ok and len(events) == 1 for ok, events in others)


def test_the_api_answers_limit_exceeded_and_writes_nothing(database_url: str) -> None:
    server = start_server(database_url, write_flow_budget_ms=1)
    try:
        with server.http() as api:
            r = api.post("/crm/v8/Leads", json={"data": [
                {"Last_Name": f"L{i}", "Email": f"l{i}@example.com"} for i in range(100)]})
            assert r.status_code == 400, r.text
            body = r.json()
            assert body["code"] == "LIMIT_EXCEEDED" and body["status"] == "error"
            assert body["details"]["limit"] == 1
            assert api.get("/crm/v8/Leads").status_code == 204
            assert api.get("/crmwatch/v1/changes").json()["changes"] == []
    finally:
        server.stop()
