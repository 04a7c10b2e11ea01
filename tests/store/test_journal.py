"""The change journal's invariants, tried against both backends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from crmwatch.store import open_store
from crmwatch.store.base import Query
from tests.test_cli import free_port, run, wait_up


def _db_rows(url: str) -> tuple[set[int], list[tuple[int, int, str]]]:
    """Live record ids, and every event (seq, record_id, operation) in seq order."""

    def flow() -> Any:
        from crmwatch.store.base import Dynamic

        def records(dialect: str, start: int) -> tuple[str, list[Any]]:
            return "SELECT id FROM records", []

        def events(dialect: str, start: int) -> tuple[str, list[Any]]:
            return "SELECT seq, record_id, operation FROM events ORDER BY seq", []

        ids = yield Dynamic(records)
        evs = yield Dynamic(events)
        return {int(r[0]) for r in ids}, [(int(e[0]), int(e[1]), e[2]) for e in evs]

    async def main() -> Any:
        store = open_store(url)
        await store.start()
        try:
            await store.sync_journal()
            return await store.read(flow())
        finally:
            await store.close()
    return asyncio.run(main())  # type: ignore[no-any-return]


class TestKillDuringWrites:
    """kill -9 during a write load: every acknowledged write and its event survive, together."""

    def test_kill_and_restart(self, database_url: str, tmp_path: Path) -> None:
        run("org", "create", "acme", db=database_url)
        creds = json.loads(run("client", "create", "--json", db=database_url).stdout)
        acked: set[int] = set()
        for _round in range(3):
            port = free_port()
            env = {**os.environ, "CRMWATCH_DATABASE_URL": database_url,
                   "CRMWATCH_PORT": str(port), "CRMWATCH_LOG_LEVEL": "error"}
            proc = subprocess.Popen([sys.executable, "-m", "crmwatch", "serve"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            base = f"http://127.0.0.1:{port}"
            try:
                wait_up(base, proc)
                token = httpx.post(base + "/oauth/v2/token", data={
                    "grant_type": "refresh_token", "client_id": creds["client_id"],
                    "client_secret": creds["client_secret"],
                    "refresh_token": creds["refresh_token"]}).json()["access_token"]
                acked |= asyncio.run(_load_then_kill(base, token, proc))
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate(timeout=20)
        live, events = _db_rows(database_url)
        assert acked <= live, "an acknowledged create is missing"
        inserted = {rid for _seq, rid, op in events if op == "insert"}
        assert inserted == live, "records and insert events differ"
        assert [s for s, _r, _o in events] == list(range(1, len(events) + 1))


async def _load_then_kill(base: str, token: str, proc: subprocess.Popen[str]) -> set[int]:
    acked: set[int] = set()
    stop = time.monotonic() + 1.5
    killed = False

    async def worker(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while time.monotonic() < stop + 5:
            i += 1
            try:
                r = await client.post("/crm/v8/Leads", content=json.dumps(
                    {"data": [{"Last_Name": f"K{n}-{i}"}, {"Last_Name": f"J{n}-{i}"}]}))
            except httpx.HTTPError:
                return
            if r.status_code == 201:
                acked.update(int(item["details"]["id"]) for item in r.json()["data"])

    async def killer() -> None:
        nonlocal killed
        await asyncio.sleep(max(0.0, stop - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
        killed = True

    async with httpx.AsyncClient(base_url=base, headers={
            "Authorization": f"Zoho-oauthtoken {token}"}, timeout=10) as client:
        await asyncio.gather(killer(), *(worker(client, n) for n in range(8)))
    assert killed and acked
    return acked


@pytest.mark.postgres
class TestSequencer:
    """Concurrent PostgreSQL transactions, some on the same records, get a dense, ordered seq."""

    def test_dense_and_per_record_order(self, pg_cluster: Any) -> None:
        from tests.conftest import new_pg_database

        url = new_pg_database(pg_cluster)
        asyncio.run(_race(url))


async def _race(url: str) -> None:
    import asyncpg

    from crmwatch.store.postgres import PostgresStore

    store = PostgresStore(url, max_size=20)
    store.run_sequencer = False
    await store.migrate()
    await store.start()
    conn = await asyncpg.connect(url)
    org = 1
    shared = list(range(1, 6))  # records many transactions update

    async def tx(n: int) -> None:
        async with store._pool.acquire() as c, c.transaction():  # type: ignore[union-attr]
            await c.execute(store._sql["emit"], org, "Leads", 1000 + n, "insert", "[]", "{}",
                            "{}", n, 0, 0)
            rid = shared[n % len(shared)]
            await c.execute("SELECT pg_advisory_xact_lock($1)", rid)
            await c.execute(store._sql["emit"], org, "Leads", rid, "update", "[]",
                            json.dumps({"n": n}), "{}", n, 0, 0)
            await asyncio.sleep(0.001 * (n % 3))

    async def sequencer() -> None:
        for _ in range(200):
            await store.sequence_once()
            await asyncio.sleep(0.002)

    await asyncio.gather(sequencer(), *(tx(n) for n in range(300)))
    await store.sync_journal()
    rows = await conn.fetch("SELECT seq, id, record_id, vals FROM events ORDER BY seq")
    assert [r["seq"] for r in rows] == list(range(1, 601))
    for rid in shared:
        ids = [r["id"] for r in rows if r["record_id"] == rid]
        assert ids == sorted(ids), "updates of one record out of commit order"
    await conn.close()
    await store.close()


def test_migrating_from_scratch_gives_the_expected_tables(database_url: str) -> None:
    def flow() -> Any:
        rows = yield Query("list_orgs", (), "all")
        return rows

    async def main() -> Any:
        store = open_store(database_url)
        await store.migrate()
        await store.migrate()  # twice: nothing happens the second time
        await store.start()
        try:
            return await store.read(flow())
        finally:
            await store.close()
    assert asyncio.run(main()) == []
