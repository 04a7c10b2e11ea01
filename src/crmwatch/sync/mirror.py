"""The mirror database: one table per module, the sync's state in tables starting with `_`.

Public schema (docs/sync.md): a table named as the module's API name with `id` TEXT PRIMARY
KEY, one column per field, `_record` (the record as JSON, in the records API's shapes) and
`_synced_at`; `_deleted(module, id, deleted_time)`. State: `_sync_modules` (per module: its
mirrored fields as JSON `[[api_name, data_type], ...]`, phase, snapshot progress, catch-up
time, last error), `_sync_state` (key/value: channel, change-feed position), `_sync_counters`
and `_inbox` (notifications acknowledged but not yet applied).

Writes are flows (generators yielding `Q` and receiving results), run in one transaction by
either backend: SQLite through the stdlib on a writer thread (WAL), PostgreSQL through
asyncpg. Module-table writes of one process are serialised by a lock, so that a read and the
write it decides go together.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from crmwatch.sync import cells
from crmwatch.sync.cells import FieldSpec
from crmwatch.sync.reconcile import Verdict, csv_verdict

T = TypeVar("T")
ID_ORDER = "length(id), id"
"""Ids are decimal strings without leading zeros: by length, then text, is numeric order."""


@dataclass(frozen=True)
class Q:
    """One statement of a flow: `args` for one execution, `many` for executemany;
    `fetch` returns the rows."""

    sql: str
    args: Sequence[Any] = ()
    many: Sequence[Sequence[Any]] | None = None
    fetch: bool = False


Flow = Generator[Q, Any, T]


def quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class MirrorError(Exception):
    """The mirror database could not be opened or written."""


@dataclass(frozen=True)
class InboxItem:
    n: int
    module: str
    operation: str
    ids: list[str]
    channel_seq: int | None
    received_at: str


# -- backends --------------------------------------------------------------------------------

class _SqliteBackend:
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="mirror-writer")
        self._inbox = ThreadPoolExecutor(1, thread_name_prefix="mirror-inbox")
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _run(self, flow: Flow[T]) -> T:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = None
            while True:
                q = flow.send(result)
                if q.many is not None:
                    conn.executemany(q.sql, q.many)
                    result = None
                else:
                    cur = conn.execute(q.sql, tuple(q.args))
                    result = cur.fetchall() if q.fetch else None
        except StopIteration as stop:
            conn.execute("COMMIT")
            return stop.value  # type: ignore[no-any-return]
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def write(self, flow: Flow[T], *, inbox: bool = False) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._inbox if inbox else self._writer,
                                              self._run, flow)
        except sqlite3.Error as exc:
            raise MirrorError(f"{self.path}: {exc}") from exc

    async def read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        def go() -> list[Any]:
            return self._conn().execute(sql, tuple(args)).fetchall()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._inbox, go)
        except sqlite3.Error as exc:
            raise MirrorError(f"{self.path}: {exc}") from exc

    async def close(self) -> None:
        def shut() -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
                self._local.conn = None
        loop = asyncio.get_running_loop()
        for pool in (self._writer, self._inbox):
            await loop.run_in_executor(pool, shut)
            pool.shutdown(wait=True)


_PARAM = re.compile(r"\?")


class _PostgresBackend:
    dialect = "postgres"

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._sql: dict[str, str] = {}

    def _pg(self, sql: str) -> str:
        done = self._sql.get(sql)
        if done is None:
            counter = iter(range(1, 1 << 20))
            done = _PARAM.sub(lambda _m: f"${next(counter)}", sql)
            self._sql[sql] = done
        return done

    async def write(self, flow: Flow[T], *, inbox: bool = False) -> T:
        import asyncpg

        try:
            async with self.pool.acquire() as conn, conn.transaction():
                result = None
                while True:
                    try:
                        q = flow.send(result)
                    except StopIteration as stop:
                        return stop.value  # type: ignore[no-any-return]
                    if q.many is not None:
                        if q.many:
                            await conn.executemany(self._pg(q.sql), q.many)
                        result = None
                    elif q.fetch:
                        result = [tuple(r) for r in await conn.fetch(self._pg(q.sql), *q.args)]
                    else:
                        await conn.execute(self._pg(q.sql), *q.args)
                        result = None
        except (asyncpg.PostgresError, OSError) as exc:
            raise MirrorError(f"postgres: {exc}") from exc

    async def read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        import asyncpg

        try:
            async with self.pool.acquire() as conn:
                return [tuple(r) for r in await conn.fetch(self._pg(sql), *args)]
        except (asyncpg.PostgresError, OSError) as exc:
            raise MirrorError(f"postgres: {exc}") from exc

    async def close(self) -> None:
        await self.pool.close()


Backend = _SqliteBackend | _PostgresBackend


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db` -> `relative.db`, `sqlite:////abs/x.db` -> `/abs/x.db`."""
    rest = url.removeprefix("sqlite://")
    if not rest.startswith("/"):
        raise MirrorError(f"not a SQLite URL: {url}")
    path = rest[1:]
    if not path:
        raise MirrorError(f"no file in {url}")
    return path


async def open_mirror(url: str) -> Mirror:
    """Open (and create, the first time) the mirror at `url`."""
    if url.startswith("sqlite:"):
        path = sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        backend: Backend = _SqliteBackend(path)
    elif url.startswith(("postgresql://", "postgres://")):
        import asyncpg

        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        except (asyncpg.PostgresError, OSError) as exc:
            raise MirrorError(f"postgres: {exc}") from exc
        backend = _PostgresBackend(pool)
    else:
        raise MirrorError(f"unknown database URL {url!r}: sqlite:///file.db or postgresql://...")
    mirror = Mirror(backend)
    await mirror.migrate()
    return mirror


# -- the mirror ------------------------------------------------------------------------------

def _state_ddl(dialect: str) -> list[str]:
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT" if dialect == "sqlite" else "BIGSERIAL PRIMARY KEY"
    big = "INTEGER" if dialect == "sqlite" else "BIGINT"
    return [
        "CREATE TABLE IF NOT EXISTS _deleted (module TEXT NOT NULL, id TEXT NOT NULL, "
        "deleted_time TEXT, PRIMARY KEY (module, id))",
        "CREATE TABLE IF NOT EXISTS _sync_modules (module TEXT PRIMARY KEY, fields TEXT NOT NULL, "
        f"phase TEXT NOT NULL, snapshot_done {big} NOT NULL DEFAULT 0, snapshot_rows {big} "
        f"NOT NULL DEFAULT 0, snapshot_total {big}, snapshot_next TEXT, snapshot_started TEXT, "
        f"exports {big} NOT NULL DEFAULT 0, last_catchup TEXT, last_applied TEXT, last_error TEXT)",
        "CREATE TABLE IF NOT EXISTS _sync_state (key TEXT PRIMARY KEY, value TEXT)",
        f"CREATE TABLE IF NOT EXISTS _sync_counters (name TEXT PRIMARY KEY, n {big} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS _inbox (n {serial}, module TEXT NOT NULL, operation TEXT "
        f"NOT NULL, ids TEXT NOT NULL, channel_seq {big}, received_at TEXT NOT NULL)",
    ]


class Mirror:
    """The mirror database (see the module docstring); `open_mirror` makes one."""

    def __init__(self, backend: Backend) -> None:
        self.db = backend
        self.dialect = backend.dialect
        self._lock = asyncio.Lock()
        self._specs: dict[str, list[FieldSpec]] = {}

    async def close(self) -> None:
        await self.db.close()

    async def migrate(self) -> None:
        def flow() -> Flow[None]:
            for ddl in _state_ddl(self.dialect):
                yield Q(ddl)
        await self.db.write(flow())

    # -- contract interface ------------------------------------------------------------------

    async def mirrored_modules(self) -> list[str]:
        rows = await self.db.read("SELECT module FROM _sync_modules ORDER BY module")
        return [str(r[0]) for r in rows]

    async def mirrored_fields(self, module: str) -> list[str]:
        return [s.name for s in await self.specs(module)]

    async def specs(self, module: str) -> list[FieldSpec]:
        """The module's mirrored fields (`id` first), from `_sync_modules.fields`."""
        rows = await self.db.read("SELECT fields FROM _sync_modules WHERE module = ?", (module,))
        if not rows:
            return []
        specs = cells.specs_from_json(orjson.loads(rows[0][0]))
        self._specs[module] = specs
        return specs

    async def iter_records(self, module: str, from_id: str | None = None,
                           to_id: str | None = None, *, batch: int = 2000,
                           ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(id, `_record`) in ascending numeric id order within [from_id, to_id]."""
        table = quote_name(module)
        last: tuple[int, str] | None = None
        if from_id is not None:
            start = "(length(id) > ? OR (length(id) = ? AND id >= ?))"
            start_args: list[Any] = [len(from_id), len(from_id), from_id]
        else:
            start, start_args = "1 = 1", []
        end, end_args = "1 = 1", []
        if to_id is not None:
            end = "(length(id) < ? OR (length(id) = ? AND id <= ?))"
            end_args = [len(to_id), len(to_id), to_id]
        while True:
            after, after_args = "1 = 1", []
            if last is not None:
                after = "(length(id) > ? OR (length(id) = ? AND id > ?))"
                after_args = [last[0], last[0], last[1]]
            rows = await self.db.read(
                f"SELECT id, _record FROM {table} WHERE {start} AND {end} AND {after} "
                f"ORDER BY {ID_ORDER} LIMIT {int(batch)}", [*start_args, *end_args, *after_args])
            for rid, raw in rows:
                yield str(rid), orjson.loads(raw)
            if len(rows) < batch:
                return
            last = (len(rows[-1][0]), str(rows[-1][0]))

    async def apply_fetched(self, module: str, records: list[dict[str, Any]]) -> None:
        """Records read from the source just now: written unconditionally (the newest)."""
        await self.apply(module, records, [], None)

    async def apply_deleted(self, module: str, ids: list[str], deleted_time: str | None) -> None:
        await self.apply(module, [], ids, deleted_time)

    # -- schema ------------------------------------------------------------------------------

    async def ensure_module(self, module: str, specs: list[FieldSpec]) -> list[str]:
        """Create the module's table, or add columns for fields new at the source; record the
        mirrored fields. Returns the columns added (a removed field keeps its column)."""
        table = quote_name(module)
        if self.dialect == "sqlite":
            existing = {r[1] for r in await self.db.read(f"PRAGMA table_info({table})")}
        else:
            existing = {r[0] for r in await self.db.read(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "AND table_schema = current_schema()", (module,))}
        added: list[str] = []

        def flow() -> Flow[None]:
            if not existing:
                cols = ", ".join(
                    f"{quote_name(s.name)} {cells.column_type(s.data_type, self.dialect)}"
                    for s in specs if s.name != "id")
                yield Q(f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, "
                        f"{cols + ', ' if cols else ''}_record TEXT NOT NULL, "
                        "_synced_at TEXT NOT NULL)")
            else:
                for s in specs:
                    if s.name not in existing:
                        added.append(s.name)
                        yield Q(f"ALTER TABLE {table} ADD COLUMN {quote_name(s.name)} "
                                f"{cells.column_type(s.data_type, self.dialect)}")
                        # rows written before the field existed have it as null at the source
                        if self.dialect == "sqlite":
                            yield Q(f"UPDATE {table} SET _record = json_insert(_record, ?, "
                                    "json('null'))", (f'$."{s.name}"',))
                        else:
                            yield Q(f"UPDATE {table} SET _record = (jsonb_build_object("
                                    "?::text, NULL) || _record::jsonb)::text", (s.name,))
            fields = orjson.dumps([s.to_json() for s in specs]).decode()
            yield Q("INSERT INTO _sync_modules (module, fields, phase) VALUES (?, ?, 'new') "
                    "ON CONFLICT (module) DO UPDATE SET fields = excluded.fields",
                    (module, fields))

        async with self._lock:
            await self.db.write(flow())
        self._specs[module] = list(specs)
        return added

    def known_fields(self, module: str) -> frozenset[str]:
        """The mirrored field names as this process last read or wrote them."""
        return frozenset(s.name for s in self._specs.get(module, ()))

    def _cached(self, module: str) -> list[FieldSpec]:
        specs = self._specs.get(module)
        if specs is None:
            raise MirrorError(f"module {module} is not mirrored")
        return specs

    # -- writes ------------------------------------------------------------------------------

    def _upsert_sql(self, module: str, specs: Sequence[FieldSpec]) -> str:
        names = [quote_name(s.name) if s.name != "id" else "id" for s in specs]
        cols = [*names, "_record", "_synced_at"]
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "id")
        return (f"INSERT INTO {quote_name(module)} ({', '.join(cols)}) VALUES "
                f"({', '.join('?' for _ in cols)}) ON CONFLICT (id) DO UPDATE SET {sets}")

    def _rows(self, specs: Sequence[FieldSpec], records: Sequence[Mapping[str, Any]],
              at: str) -> list[tuple[Any, ...]]:
        names = frozenset(s.name for s in specs)
        return [(*values, cells.record_json(specs, r, names), at)
                for values, r in zip(cells.rows_values(specs, records), records, strict=True)]

    def _apply_flow(self, module: str, records: Sequence[Mapping[str, Any]],
                    deleted: Sequence[str], deleted_time: str | None,
                    inbox: Sequence[int] = (), state: Mapping[str, str] | None = None,
                    ) -> Flow[None]:
        specs = self._cached(module)
        at = now_text()
        if records:
            yield Q(self._upsert_sql(module, specs), many=self._rows(specs, records, at))
            yield Q("UPDATE _sync_modules SET last_applied = ? WHERE module = ?", (at, module))
        if deleted:
            yield Q(f"DELETE FROM {quote_name(module)} WHERE id = ?", many=[(i,) for i in deleted])
            yield Q("INSERT INTO _deleted (module, id, deleted_time) VALUES (?, ?, ?) "
                    "ON CONFLICT (module, id) DO UPDATE SET deleted_time = "
                    "COALESCE(excluded.deleted_time, _deleted.deleted_time)",
                    many=[(module, i, deleted_time) for i in deleted])
            yield Q("UPDATE _sync_modules SET last_applied = ? WHERE module = ?", (at, module))
        if inbox:
            yield Q("DELETE FROM _inbox WHERE n = ?", many=[(n,) for n in inbox])
        for key, value in (state or {}).items():
            yield from _set_state(key, value)

    async def apply(self, module: str, records: Sequence[Mapping[str, Any]],
                    deleted: Sequence[str], deleted_time: str | None, *,
                    inbox: Sequence[int] = (), state: Mapping[str, str] | None = None) -> None:
        """In one transaction: write `records` (read from the source just now), remove the
        `deleted` ids (recorded in `_deleted`), drop the `inbox` items they came from, and
        set `state` keys."""
        if module not in self._specs:
            await self.specs(module)
        async with self._lock:
            await self.db.write(self._apply_flow(module, records, deleted, deleted_time,
                                                 inbox, state))

    async def apply_snapshot(self, module: str,
                             rows: cells.Batch | Sequence[tuple[dict[str, Any], bool]],
                             window: frozenset[str] = frozenset(),
                             progress: Mapping[str, Any] | None = None,
                             ) -> tuple[int, list[str]]:
        """Apply rows of an export by the CSV rule (reconcile.csv_verdict): returns (rows
        written, ids to read again); those are queued in `_inbox` in the same transaction. An
        incomplete row (cells.from_cells) is read again unless the CSV rule skips it.
        `progress` sets `_sync_modules` columns in the same transaction. Rows come sorted by
        id (Bulk Read's order), so what the mirror holds of them is read with one range
        query.
        """
        specs = self._cached(module)
        batch = rows if isinstance(rows, cells.Batch) else cells.batch_of(specs, rows)
        table = quote_name(module)
        ids = batch.ids
        sql = self._upsert_sql(module, specs)

        def flow() -> Flow[tuple[int, list[str]]]:
            stored: dict[str, dict[str, Any]] = {}
            gone: set[str] = set()
            if ids:
                # The batch's ids lie within their smallest and largest as text: a range of
                # the primary key's index (ids of one length, as Zoho's are, make it tight);
                # other ids in it are dropped below.
                within = "id >= ? AND id <= ?"
                bounds = [min(ids), max(ids)]
                found = yield Q(f"SELECT id, _record FROM {table} WHERE {within}", bounds,
                                fetch=True)
                wanted = set(ids)
                stored.update((str(i), orjson.loads(raw)) for i, raw in found
                              if str(i) in wanted)
                dead = yield Q(f"SELECT id FROM _deleted WHERE module = ? AND {within}",
                               [module, *bounds], fetch=True)
                gone.update(str(r[0]) for r in dead)
            keep: list[int] = []
            reread: list[str] = []
            for k, rid in enumerate(ids):
                old = stored.get(rid)
                if old is None and rid not in gone and rid not in window:
                    verdict = Verdict.WRITE
                else:
                    verdict = csv_verdict(batch.record(k), old, deleted=rid in gone,
                                          changed_in_window=rid in window)
                if verdict is Verdict.SKIP:
                    continue
                if verdict is Verdict.REREAD or not batch.complete[k]:
                    reread.append(rid)
                else:
                    keep.append(k)
            at = now_text()
            if keep:
                if len(keep) == len(ids):
                    values = list(zip(*batch.columns, batch.texts, [at] * len(ids),
                                      strict=True))
                else:
                    values = [(*(c[k] for c in batch.columns), batch.texts[k], at)
                              for k in keep]
                yield Q(sql, many=values)
            if reread:  # read again by the applier, durably queued with the rest
                yield Q("INSERT INTO _inbox (module, operation, ids, channel_seq, received_at) "
                        "VALUES (?, 'update', ?, NULL, ?)",
                        (module, orjson.dumps(reread).decode(), at))
            if progress:
                sets = ", ".join(f"{k} = ?" for k in progress)
                yield Q(f"UPDATE _sync_modules SET {sets} WHERE module = ?",
                        [*progress.values(), module])
            return len(keep), reread

        async with self._lock:
            return await self.db.write(flow())

    # -- the inbox ---------------------------------------------------------------------------

    async def enqueue(self, module: str, operation: str, ids: Sequence[str],
                      channel_seq: int | None, *, count: bool = True) -> None:
        """Queue an accepted notification durably (committed when this returns); `count`
        it as received (records the snapshot wants read again are queued uncounted)."""
        def flow() -> Flow[None]:
            yield Q("INSERT INTO _inbox (module, operation, ids, channel_seq, received_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (module, operation, orjson.dumps(list(ids)).decode(), channel_seq,
                     now_text()))
            if count:
                yield from _count("received")
            if channel_seq is not None:
                yield from _set_max("channel_seq", channel_seq)
        await self.db.write(flow(), inbox=True)

    async def count(self, name: str, by: int = 1) -> None:
        await self.db.write(_count(name, by), inbox=True)

    async def take_inbox(self, limit: int = 500) -> list[InboxItem]:
        rows = await self.db.read("SELECT n, module, operation, ids, channel_seq, received_at "
                                  f"FROM _inbox ORDER BY n LIMIT {int(limit)}")
        return [InboxItem(int(r[0]), str(r[1]), str(r[2]), list(orjson.loads(r[3])),
                          None if r[4] is None else int(r[4]), str(r[5])) for r in rows]

    async def inbox_size(self) -> int:
        rows = await self.db.read("SELECT COUNT(*) FROM _inbox")
        return int(rows[0][0])

    async def drop_inbox(self, ns: Sequence[int]) -> None:
        def flow() -> Flow[None]:
            yield Q("DELETE FROM _inbox WHERE n = ?", many=[(n,) for n in ns])
        await self.db.write(flow())

    # -- state -------------------------------------------------------------------------------

    async def get_state(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in await self.db.read(
            "SELECT key, value FROM _sync_state") if v is not None}

    async def set_state(self, values: Mapping[str, str]) -> None:
        def flow() -> Flow[None]:
            for key, value in values.items():
                yield from _set_state(key, value)
        await self.db.write(flow())

    async def counters(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in await self.db.read(
            "SELECT name, n FROM _sync_counters")}

    async def module_state(self, module: str) -> dict[str, Any]:
        cols = ("module", "phase", "snapshot_done", "snapshot_rows", "snapshot_total",
                "snapshot_next", "snapshot_started", "exports", "last_catchup",
                "last_applied", "last_error")
        rows = await self.db.read(f"SELECT {', '.join(cols)} FROM _sync_modules WHERE module = ?",
                                  (module,))
        return dict(zip(cols, rows[0], strict=True)) if rows else {}

    async def set_module_state(self, module: str, **values: Any) -> None:
        def flow() -> Flow[None]:
            sets = ", ".join(f"{k} = ?" for k in values)
            yield Q(f"UPDATE _sync_modules SET {sets} WHERE module = ?",
                    [*values.values(), module])
        await self.db.write(flow())

    async def row_count(self, module: str) -> int:
        rows = await self.db.read(f"SELECT COUNT(*) FROM {quote_name(module)}")
        return int(rows[0][0])

    async def stored_records(self, module: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            rows = await self.db.read(f"SELECT id, _record FROM {quote_name(module)} WHERE id IN "
                                      f"({', '.join('?' for _ in chunk)})", chunk)
            out.update((str(i), orjson.loads(r)) for i, r in rows)
        return out


def _set_state(key: str, value: str) -> Flow[None]:
    yield Q("INSERT INTO _sync_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


def _count(name: str, by: int = 1) -> Flow[None]:
    yield Q("INSERT INTO _sync_counters (name, n) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET n = _sync_counters.n + excluded.n", (name, by))


def _set_max(name: str, value: int) -> Flow[None]:
    yield Q("INSERT INTO _sync_counters (name, n) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
            "SET n = CASE WHEN excluded.n > _sync_counters.n THEN excluded.n "
            "ELSE _sync_counters.n END", (name, value))

