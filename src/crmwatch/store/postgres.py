"""PostgreSQL backend (asyncpg): a connection pool, and the journal sequencer.

Several crmwatch processes may share one database. Each runs a sequencer task; the one that
holds the advisory lock in a round numbers the committed journal rows (see
`sequence_events` in sql/postgres.sql), the others skip that round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg

from crmwatch.store.base import (
    BudgetExceeded,
    Conflict,
    Dynamic,
    Emit,
    Flow,
    NextIds,
    Query,
    Savepoint,
    StoreError,
    T,
)
from crmwatch.store.sql import migrations, queries

log = logging.getLogger(__name__)

ID_BLOCK = 100
MIGRATION_LOCK = 7_420_001
SEQUENCER_LOCK = 7_420_002


class PostgresStore:
    dialect = "postgres"

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 16,
                 sequencer_interval: float = 0.02) -> None:
        self.url = url
        self.min_size, self.max_size = min_size, max_size
        self.sequencer_interval = sequencer_interval
        self._sql = queries("postgres")
        self._pool: asyncpg.Pool | None = None
        self._sequencer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.run_sequencer = True
        self._stopping = False
        self.on_commit: list[Any] = []
        self.on_sequenced: list[Any] = []
        """Called after this process's sequencer numbered new journal events (a dispatcher
        waits for these, not for commits: an event is invisible to it until numbered)."""
        self._ids: list[int] = []

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=self.min_size, max_size=self.max_size,
                server_settings={"application_name": "crmwatch"}, reset=_no_reset)
        return self._pool

    async def migrate(self) -> None:
        pool = await self._ensure_pool()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                               "(number INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            done = {r[0] for r in await conn.fetch("SELECT number FROM schema_migrations")}
            for number, name, sql in migrations("postgres"):
                if number not in done:
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)",
                                       number, name)

    async def start(self) -> None:
        await self._ensure_pool()
        if self.run_sequencer and self._sequencer is None:
            self._sequencer = asyncio.create_task(self._sequence_forever(),
                                                  name="crmwatch-sequencer")

    async def close(self) -> None:
        if self._sequencer is not None:
            # Let a round in progress finish (cancelling mid-query leaves the connection busy
            # and pool.close() waiting), then stop.
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._sequencer), 5)
            except (TimeoutError, asyncio.CancelledError):
                self._sequencer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sequencer
            self._sequencer = None
        if self._pool is not None:
            try:
                # Graceful close waits for every connection to be released; a task cancelled
                # mid-query can leave one busy for long, so bound the wait.
                await asyncio.wait_for(self._pool.close(), 5)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None

    # -- flows --------------------------------------------------------------------------------

    async def read(self, flow: Flow[T]) -> T:
        pool = await self._ensure_pool()
        async with pool.acquire() as conn:
            return await self._drive(conn, flow)

    async def write(self, flow: Flow[T], *, budget_ms: int = 0) -> T:
        """One transaction; with `budget_ms`, the flow is stopped between two statements once
        it has run that long (flows here run side by side: a long one delays only itself)."""
        pool = await self._ensure_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                result = await self._drive(conn, flow, budget_ms)
        except (asyncpg.PostgresError, OSError) as exc:
            raise StoreError(f"database write failed: {exc}") from exc
        self._wake.set()
        for hook in self.on_commit:
            hook()
        return result

    async def _execute(self, conn: Any, op: Any) -> Any:
        if isinstance(op, Query):
            sql = self._sql[op.name]
            if op.mode == "many":
                await conn.executemany(sql, op.args)
                return None
            return await _fetch(conn, sql, op.args, op.mode)
        if isinstance(op, Emit):
            await conn.execute(self._sql["emit"], op.org_id, op.module, op.record_id,
                               op.operation, op.changed, op.values, op.related, op.batch,
                               op.time_ms, op.user_id)
            return None
        if isinstance(op, NextIds):
            return await self._next_ids(conn, op.count)
        if isinstance(op, Dynamic):
            sql, args = op.build("postgres", 1)
            return await _fetch(conn, sql, args, op.mode)
        if isinstance(op, Savepoint):
            await conn.execute(_SAVEPOINT[op.action])
            return None
        raise TypeError(f"unknown operation {op!r}")

    async def _next_ids(self, conn: Any, count: int) -> list[int]:
        """Ids from blocks of ID_BLOCK reserved per process: most writes need no round trip.

        A block left unused when the process stops leaves a gap; ids stay unique and rising
        within a process, which is all that is promised.
        """
        out: list[int] = []
        while len(out) < count:
            if not self._ids:
                block = await conn.fetchval(self._sql["next_id_block"])
                self._ids = list(range(block * ID_BLOCK + ID_BLOCK - 1, block * ID_BLOCK - 1, -1))
            out.append(self._ids.pop())
        return out

    async def _drive(self, conn: Any, flow: Flow[T], budget_ms: int = 0) -> T:
        deadline = time.monotonic() + budget_ms / 1000 if budget_ms else None
        try:
            op = next(flow)
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    flow.close()
                    raise BudgetExceeded(budget_ms)
                try:
                    result = await self._execute(conn, op)
                except asyncpg.UniqueViolationError as exc:
                    op = flow.throw(Conflict(str(exc)))
                    continue
                except asyncpg.PostgresError as exc:
                    op = flow.throw(StoreError(str(exc)))
                    continue
                op = flow.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    # -- the journal sequencer ----------------------------------------------------------------

    async def sequence_once(self, limit: int = 5000, *, wait: bool = False) -> int:
        """Number committed journal rows; returns how many.

        Without `wait`, returns 0 at once when another process is sequencing.
        """
        pool = await self._ensure_pool()
        async with pool.acquire() as conn, conn.transaction():
            if wait:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", SEQUENCER_LOCK)
            elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)",
                                         SEQUENCER_LOCK):
                return 0
            rows = await conn.fetch(self._sql["sequence_events"], limit)
        if rows:
            for hook in self.on_sequenced:
                hook()
        return len(rows)

    async def sync_journal(self) -> None:
        """Number every event committed before this call (read-your-writes for the feed)."""
        while await self.sequence_once(wait=True) > 0:
            pass

    async def _sequence_forever(self) -> None:
        while not self._stopping:
            try:
                while await self.sequence_once() > 0:
                    pass
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("journal sequencer: %s", exc)
                await asyncio.sleep(1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.sequencer_interval)
            self._wake.clear()


_SAVEPOINT = {"begin": "SAVEPOINT part",
              "rollback": "ROLLBACK TO SAVEPOINT part; RELEASE SAVEPOINT part",
              "release": "RELEASE SAVEPOINT part"}
"""A flow's own savepoints (`Savepoint`); a rollback also clears a failed statement."""


async def _fetch(conn: Any, sql: str, args: Any, mode: str) -> Any:
    if mode == "none":
        await conn.execute(sql, *args)
        return None
    if mode == "one":
        return await conn.fetchrow(sql, *args)
    if mode == "all":
        return await conn.fetch(sql, *args)
    if mode == "val":
        return await conn.fetchval(sql, *args)
    raise ValueError(mode)


async def _no_reset(conn: Any) -> None:
    """Connections go back to the pool as they are: crmwatch keeps no session state (its
    advisory locks are per transaction, no LISTEN, no SET), so asyncpg's default reset
    would only cost a round trip per query."""
