"""SQLite backend: one writer thread with group commit, reads on their own connection.

Writes (flows) are queued to the writer thread, which runs up to `batch` of them in one
`BEGIN IMMEDIATE` transaction, each inside its own SAVEPOINT so that one failing flow rolls
back alone, then COMMITs once and acknowledges every flow: each caller hears back only after
its work is durable. Reads run on the event-loop thread on a separate WAL connection: point
reads take microseconds, and the loop never waits behind the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

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

_STOP = object()


def _connect(path: str) -> sqlite3.Connection:
    _create_private(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _create_private(path: str) -> None:
    """A new database file is made 0600 (it holds signing secrets and the token key); SQLite
    gives its -wal and -shm files the database file's mode. An existing file keeps its own."""
    if path == ":memory:" or path.startswith("file:"):
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def open_to_others(path: str) -> int | None:
    """The mode of a database file that group or others may read or write, else None (made
    before new files were created 0600, or widened since)."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return None
    return mode if mode & 0o066 else None


def path_from_url(url: str) -> str:
    """`sqlite:///rel.db`, `sqlite:////abs.db` or a bare path -> a file path."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):] or "crmwatch.db"
    if url.startswith("sqlite://"):
        return url[len("sqlite://"):] or "crmwatch.db"
    return url


class SQLiteStore:
    dialect = "sqlite"

    def __init__(self, url: str, *, batch: int = 200) -> None:
        self.path = path_from_url(url)
        self.batch = batch
        self._sql = queries("sqlite")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self.on_commit: list[Callable[[], None]] = []
        self._deadline: float | None = None
        """When the writer's current flow runs out of budget (monotonic seconds), if any;
        only the writer thread reads or sets it."""
        self._interruptible = False
        """Whether the writer's current statement is a SELECT, which the budget may stop
        (an interrupted INSERT, UPDATE or DELETE would roll back the whole group)."""

    # -- lifecycle ----------------------------------------------------------------------------

    async def migrate(self) -> None:
        conn = _connect(self.path)
        try:
            migrate_sqlite(conn)
        finally:
            conn.close()

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._writer = _connect(self.path)
        self._writer.set_progress_handler(self._over_budget, 10_000)
        self._reader = _connect(self.path)
        self._thread = threading.Thread(target=self._run, name="crmwatch-sqlite-writer",
                                        daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None

    async def sync_journal(self) -> None:
        """Events are numbered as they commit: nothing to wait for."""

    # -- flows --------------------------------------------------------------------------------

    async def read(self, flow: Flow[T]) -> T:
        if self._reader is None:
            await self.start()
        assert self._reader is not None
        return self._drive(self._reader, flow)

    async def write(self, flow: Flow[T], *, budget_ms: int = 0) -> T:
        if self._thread is None:
            await self.start()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((flow, loop, fut, budget_ms))
        return await fut

    def write_sync(self, flow: Flow[T]) -> T:
        """Run a write flow on a connection of its own (commands, no server needed)."""
        conn = _connect(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = self._drive(conn, flow)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        finally:
            conn.close()

    def read_sync(self, flow: Flow[T]) -> T:
        conn = _connect(self.path)
        try:
            return self._drive(conn, flow)
        finally:
            conn.close()

    def _execute(self, conn: sqlite3.Connection, op: Any) -> Any:
        if isinstance(op, Query):
            sql = self._sql[op.name]
            if op.mode == "many":
                conn.executemany(sql, op.args)
                return None
            self._interruptible = conn is self._writer and sql.startswith("SELECT")
            cur = conn.execute(sql, op.args)
            return _fetch(cur, op.mode)
        if isinstance(op, Emit):
            conn.execute(self._sql["emit"], (op.org_id, op.module, op.record_id, op.operation,
                                             op.changed, op.values, op.related, op.batch,
                                             op.time_ms, op.user_id))
            return None
        if isinstance(op, NextIds):
            (last,) = conn.execute(self._sql["next_ids"], (op.count,)).fetchone()
            return list(range(last - op.count + 1, last + 1))
        if isinstance(op, Dynamic):
            sql, args = op.build("sqlite", 1)
            self._interruptible = conn is self._writer and sql.startswith("SELECT")
            return _fetch(conn.execute(sql, args), op.mode)
        if isinstance(op, Savepoint):
            for statement in _SAVEPOINT[op.action]:
                conn.execute(statement)
            return None
        raise TypeError(f"unknown operation {op!r}")

    def _drive(self, conn: sqlite3.Connection, flow: Flow[T], budget_ms: int = 0) -> T:
        """Run `flow` on `conn`; on the writer with `budget_ms`, stop it once the writer's
        deadline has passed (between operations, or by interrupting a SELECT) and raise
        BudgetExceeded."""
        mine = conn is self._writer and budget_ms > 0
        try:
            op = next(flow)
            while True:
                if mine and self._late():
                    flow.close()
                    raise BudgetExceeded(budget_ms)
                try:
                    result = self._execute(conn, op)
                except sqlite3.IntegrityError as exc:
                    op = flow.throw(Conflict(str(exc)))
                    continue
                except sqlite3.Error as exc:
                    if mine and self._late():
                        flow.close()
                        raise BudgetExceeded(budget_ms) from None
                    op = flow.throw(StoreError(str(exc)))
                    continue
                finally:
                    self._interruptible = False
                op = flow.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _late(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    def _over_budget(self) -> int:
        """SQLite's progress handler: non-zero stops the running statement."""
        return 1 if self._interruptible and self._late() else 0

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        conn = self._writer
        assert conn is not None
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            items = [item]
            stop = False
            while len(items) < self.batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                items.append(nxt)
            self._commit_group(conn, items)
            if stop:
                return

    def _commit_group(self, conn: sqlite3.Connection, items: list[Any]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for flow, _loop, _fut, budget_ms in items:
                conn.execute("SAVEPOINT flow")
                self._deadline = time.monotonic() + budget_ms / 1000 if budget_ms else None
                try:
                    result = self._drive(conn, flow, budget_ms)
                except BaseException as exc:  # the flow's own failure: roll back just it
                    conn.execute("ROLLBACK TO flow")
                    conn.execute("RELEASE flow")
                    outcomes.append((False, exc))
                else:
                    conn.execute("RELEASE flow")
                    outcomes.append((True, result))
                finally:
                    self._deadline = None
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("sqlite commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            err = StoreError(f"database write failed: {exc}")
            outcomes = [(False, err) for _ in items]
        for (ok, value), (_flow, loop, fut, _budget) in zip(outcomes, items, strict=True):
            loop.call_soon_threadsafe(_settle, fut, ok, value)
        for hook in self.on_commit:
            hook()


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


_SAVEPOINT = {"begin": ("SAVEPOINT part",),
              "rollback": ("ROLLBACK TO part", "RELEASE part"),
              "release": ("RELEASE part",)}
"""A flow's own savepoints (`Savepoint`), nested inside the writer's per-flow one."""


def _fetch(cur: sqlite3.Cursor, mode: str) -> Any:
    if mode == "none":
        return None
    if mode == "one":
        return cur.fetchone()
    if mode == "all":
        return cur.fetchall()
    if mode == "val":
        row = cur.fetchone()
        return None if row is None else row[0]
    raise ValueError(mode)


def migrate_sqlite(conn: sqlite3.Connection) -> None:
    """Apply every migration not applied yet, each in its own transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                     "(number INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        done = {row[0] for row in conn.execute("SELECT number FROM schema_migrations")}
        for number, name, sql in migrations("sqlite"):
            if number in done:
                continue
            for statement in _split(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (number, name))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _split(sql: str) -> list[str]:
    statements, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf)
            buf = ""
    return statements
