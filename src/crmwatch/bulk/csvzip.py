"""The Bulk Read export: one page of a module's records as `<job_id>.csv` inside a zip.

Runs outside the server's event loop (a child process, see bulk/runner.py), on a database
connection of its own: the synchronous sqlite3 module for SQLite, asyncpg (a server-side
cursor) for PostgreSQL. Rows are read in batches and written as they come, so memory stays
flat whatever the page size. Everything it needs travels in one plain `spec` dict, so it can
be sent to another process.

Results directory (no Setting for it yet): beside the SQLite file, `<db dir>/crmwatch-bulk/`;
for PostgreSQL, `<tempfile.gettempdir()>/crmwatch-bulk/`.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from crmwatch.domain import clock, criteria

BATCH = 1000
LOOKUP_TYPES = frozenset({"lookup", "ownerlookup", "userlookup"})


@dataclass(frozen=True, slots=True)
class ExportResult:
    count: int
    more_records: bool
    path: str


def results_dir(database_url: str) -> str:
    """Where finished exports go (see the module docstring)."""
    if database_url.startswith("postgres"):
        return os.path.join(tempfile.gettempdir(), "crmwatch-bulk")
    from crmwatch.store.sqlite import path_from_url

    return os.path.join(os.path.dirname(os.path.abspath(path_from_url(database_url))),
                        "crmwatch-bulk")


def job_spec(database_url: str, job: Any) -> dict[str, Any]:
    """The plain arguments of `export` for a store.bulk.Job."""
    return {"database_url": database_url, "id": job.id, "org_id": job.org_id,
            "module": job.module, "criteria": job.query.get("criteria"), "plan": job.plan,
            "page": job.page, "per_page": job.per_page}


def _select(spec: dict[str, Any], dialect: str) -> tuple[str, list[Any]]:
    args: list[Any] = [spec["org_id"], spec["module"]]

    def p(value: Any) -> str:
        args.append(value)
        return f"?{len(args)}" if dialect == "sqlite" else f"${len(args)}"

    where = [f"org_id = {'?1' if dialect == 'sqlite' else '$1'}",
             f"module = {'?2' if dialect == 'sqlite' else '$2'}"]
    if spec.get("criteria") is not None:
        types = spec["plan"]["types"]
        node = criteria.parse_bulk(spec["criteria"], types)
        sql, extra = criteria.compile_sql(node, dialect, types,  # type: ignore[arg-type]
                                          param_start=len(args) + 1)
        args.extend(extra)
        where.append(f"({sql})")
    per_page = int(spec["per_page"])
    data = "data" if dialect == "sqlite" else "data::text"
    text = (f"SELECT id, {data}, created_time, modified_time FROM records "
            f"WHERE {' AND '.join(where)} ORDER BY id ASC "
            f"LIMIT {p(per_page + 1)} OFFSET {p((int(spec['page']) - 1) * per_page)}")
    return text, args


def format_value(data_type: str, value: Any, tz: Any) -> str:
    """A stored value as Zoho's CSV export shows it."""
    if value is None:
        return ""
    if data_type in LOOKUP_TYPES and isinstance(value, dict):
        return str(value.get("id") or "")
    if isinstance(value, bool):
        return "true" if value else "false"
    if data_type == "datetime" and isinstance(value, str):
        return clock.local_text(value, tz)
    if isinstance(value, list):
        return ";".join(v if isinstance(v, str) else orjson.dumps(v).decode() for v in value)
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return str(value)


def _row(columns: Sequence[Sequence[str]], r: Sequence[Any], tz: Any) -> list[str]:
    data = orjson.loads(r[1])
    out = [str(r[0])]
    for name, data_type in columns:
        if name == "Created_Time":
            out.append(clock.format_ms(int(r[2]), tz))
        elif name == "Modified_Time":
            out.append(clock.format_ms(int(r[3]), tz))
        else:
            out.append(format_value(data_type, data.get(name), tz))
    return out


def _sqlite_rows(spec: dict[str, Any]) -> Iterator[Sequence[Any]]:
    from crmwatch.store.sqlite import path_from_url

    sql, args = _select(spec, "sqlite")
    conn = sqlite3.connect(path_from_url(spec["database_url"]), timeout=30)
    try:
        cur = conn.execute(sql, args)
        while batch := cur.fetchmany(BATCH):
            yield from batch
    finally:
        conn.close()


def _postgres_rows(spec: dict[str, Any]) -> Iterator[Sequence[Any]]:
    """Rows from a server-side cursor, fetched BATCH at a time by a private event loop."""
    import asyncio

    import asyncpg

    sql, args = _select(spec, "postgres")
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(spec["database_url"]))
    try:
        tx = conn.transaction(readonly=True)
        loop.run_until_complete(tx.start())
        cursor = loop.run_until_complete(conn.cursor(sql, *args))
        while batch := loop.run_until_complete(cursor.fetch(BATCH)):
            yield from batch
        loop.run_until_complete(tx.rollback())
    finally:
        loop.run_until_complete(conn.close())
        loop.close()


def export(spec: dict[str, Any], out_dir: str | None = None) -> ExportResult:
    """Write the job's page to `<out_dir>/<id>.zip`; the count and whether more records follow.

    Raises criteria.CriteriaError for a criteria the stored field types no longer accept.
    """
    out_dir = out_dir or results_dir(spec["database_url"])
    os.makedirs(out_dir, exist_ok=True)
    plan = spec["plan"]
    tz = clock.zone(plan["tz"])
    columns = [tuple(c) for c in plan["columns"]]
    per_page = int(spec["per_page"])
    rows = (_postgres_rows(spec) if spec["database_url"].startswith("postgres")
            else _sqlite_rows(spec))
    final = os.path.join(out_dir, f"{spec['id']}.zip")
    partial = f"{final}.{os.getpid()}.part"
    count = 0
    more = False
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf, \
            zf.open(f"{spec['id']}.csv", "w", force_zip64=True) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(["Id", *(c[0] for c in columns)])
        for r in rows:
            if count == per_page:
                more = True
                break
            writer.writerow(_row(columns, r, tz))
            count += 1
        text.flush()
        text.detach()
    close = getattr(rows, "close", None)
    if close is not None:
        close()
    os.replace(partial, final)
    return ExportResult(count, more, final)
