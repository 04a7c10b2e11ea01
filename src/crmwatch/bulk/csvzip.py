"""The Bulk Read export: one page of a module's records as `<job_id>.csv` inside a zip.

Runs outside the server's event loop (a child process, see bulk/runner.py), on a database
connection of its own. Everything it needs travels in one plain `spec` dict, so it can be sent
to another process. Memory stays flat whatever the page size: rows stream into the zip.

One format, two readers (the cell rules and the CSV dialect are in bulk/cells.py):
- PostgreSQL formats the cells in SQL and streams `COPY ... (FORMAT csv)` (bulk/pgexport.py).
- SQLite hands over each record's exported values as one JSON array (a multi-path
  `json_extract`: less to parse than all of `data`), fetched BATCH rows at a time and
  formatted column by column in Python (`cells.format_batch`), while a thread compresses.

Records go in id order. A page is `page`/`per_page` (LIMIT and OFFSET), or, when the spec has
`after_id`, the first `per_page` records with a greater id, whatever `page` says (page
tokens: no OFFSET to skip).

The zip is deflated at level 1: on CSV it is about twice as fast as the default level 6, for a
file about 15% larger (37.3 against 32.5 MB for a page of 200,000 Leads, bench/bulk_bench.py);
at level 6 deflating alone took longer than the 2 s a PostgreSQL export of 200 000 records
may take.

Failure safety: the zip is written to a unique `<id>.zip.<pid>.<random>.part` beside the
result, fsynced, then renamed, so `<id>.zip` only ever appears complete. On any failure the
partial file is removed; write failures (no space, no permission, a results "directory" that
is a file) raise ExportError, whose message names the path and whose `strerror` does not.

Results directory: `spec["out_dir"]` (the runner's `bulk_results_dir` setting), else the
`out_dir` argument, else beside the SQLite file (`<db dir>/crmwatch-bulk/`), for PostgreSQL
`<tempfile.gettempdir()>/crmwatch-bulk-<uid>/`. It is created 0700 and the files 0600; one
that another user owns or may write is refused (`check_dir`).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import glob
import os
import queue
import secrets
import sqlite3
import stat
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from crmwatch.bulk import cells
from crmwatch.domain import clock, criteria
from crmwatch.domain.modules import NAME

__all__ = ["ExportError", "ExportResult", "check_dir", "export", "job_spec", "page_bounds",
           "page_filter", "remove_partials", "results_dir"]

BATCH = 2000
"""SQLite rows formatted at a time."""
CHUNK = 1024 * 1024
"""Bytes gathered before each write into the zip entry (fewer, larger deflate calls)."""
ZIP_LEVEL = 1

Write = Callable[[bytes], None]
Page = tuple[int, bool, int | None]
"""count, more_records, last_id"""


class ExportError(OSError):
    """The export file could not be written.

    `str()` says where and why, for the log; `strerror` only the OS's words ("No space left on
    device"), which a job's FAILURE may show to API clients without a server path.
    """

    def __init__(self, message: str, code: int | None, strerror: str) -> None:
        super().__init__(code, strerror)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:  # sent back from the export's process
        return type(self), (self.message, self.errno, self.strerror)


@dataclass(frozen=True, slots=True)
class ExportResult:
    count: int
    more_records: bool
    path: str
    last_id: int | None
    """Id of the last exported record; None when there are none."""


def results_dir(database_url: str) -> str:
    """Where finished exports go by default (see the module docstring)."""
    if database_url.startswith("postgres"):  # one per user: a shared one would be refused
        return os.path.join(tempfile.gettempdir(), f"crmwatch-bulk-{os.geteuid()}")
    from crmwatch.store.sqlite import path_from_url

    return os.path.join(os.path.dirname(os.path.abspath(path_from_url(database_url))),
                        "crmwatch-bulk")


def job_spec(database_url: str, job: Any) -> dict[str, Any]:
    """The plain arguments of `export` for a store.bulk.Job."""
    return {"database_url": database_url, "id": job.id, "org_id": job.org_id,
            "module": job.module, "criteria": job.query.get("criteria"), "plan": job.plan,
            "page": job.page, "per_page": job.per_page}


# -- SQLite ----------------------------------------------------------------------------------

def _sqlite_values(columns: list[list[str]]) -> str:
    """SQL for a JSON array of the record's values of the data columns (cells.format_batch)."""
    names = cells.data_columns(columns)
    paths = []
    for name in names:
        if not NAME.fullmatch(name):  # letters, digits and _: safe in the path literal
            raise ValueError(f"invalid field name {name!r}")
        paths.append(f"'$.\"{name}\"'")
    if len(paths) == 1:
        paths.append(paths[0])  # with one path json_extract gives the bare value, not an array
    return f"json_extract(r.data, {', '.join(paths)})" if paths else "'[]'"


def page_filter(spec: dict[str, Any], dialect: criteria.Dialect) -> tuple[str, list[Any]]:
    """The WHERE condition of the job's records (org, module, after a key, criteria) over
    `records r`, with `dialect`'s placeholders, and its arguments. Both readers use it."""
    def mark(n: int) -> str:
        return f"?{n}" if dialect == "sqlite" else f"${n}"

    args: list[Any] = [int(spec["org_id"]), spec["module"]]
    where = [f"r.org_id = {mark(1)}", f"r.module = {mark(2)}"]
    after = spec.get("after_id")
    if after is not None:
        args.append(int(after))
        where.append(f"r.id > {mark(len(args))}")
    if spec.get("criteria") is not None:
        types = spec["plan"]["types"]
        node = criteria.parse_bulk(spec["criteria"], types)
        sql, extra = criteria.compile_sql(node, dialect, types, param_start=len(args) + 1,
                                          table="r")
        args.extend(extra)
        where.append(f"({sql})")
    return " AND ".join(where), args


def page_bounds(spec: dict[str, Any], limit: int) -> str:
    """ORDER BY and LIMIT of the page: after the key when the spec has one, else by OFFSET."""
    text = f"ORDER BY r.id LIMIT {limit}"
    if spec.get("after_id") is None and int(spec["page"]) > 1:
        text += f" OFFSET {(int(spec['page']) - 1) * int(spec['per_page'])}"
    return text


def _sqlite_select(spec: dict[str, Any]) -> tuple[str, list[Any]]:
    where, args = page_filter(spec, "sqlite")
    values = _sqlite_values(spec["plan"]["columns"])
    text = (f"SELECT r.id, {values}, r.created_time, r.modified_time FROM records r "
            f"WHERE {where} {page_bounds(spec, int(spec['per_page']) + 1)}")
    return text, args


def _sqlite_page(spec: dict[str, Any], write: Write) -> Page:
    from crmwatch.store.sqlite import path_from_url

    plan = spec["plan"]
    tz = clock.zone(plan["tz"])
    columns = [tuple(c) for c in plan["columns"]]
    per_page = int(spec["per_page"])
    sql, args = _sqlite_select(spec)
    count, more, last_id = 0, False, None
    conn = sqlite3.connect(path_from_url(spec["database_url"]), timeout=30)
    collecting = gc.isenabled()
    gc.disable()  # a batch makes ~100 000 objects and no cycles: collecting is wasted time
    try:
        cur = conn.execute(sql, args)  # one statement: one consistent snapshot
        while batch := cur.fetchmany(BATCH):
            if count + len(batch) > per_page:
                batch, more = batch[:per_page - count], True
            if batch:
                write(cells.format_batch(columns, batch, tz).encode())
                count += len(batch)
                last_id = int(batch[-1][0])
            if more:
                break
    finally:
        if collecting:
            gc.enable()
        conn.close()
    return count, more, last_id


# -- writing ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _writing(path: str) -> Iterator[None]:
    """Turn a file-system error into an ExportError that names `path`."""
    try:
        yield
    except ExportError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ExportError(f"cannot write the bulk read result {path}: {reason}", exc.errno,
                          reason) from exc


class _Sink:
    """Gathers bytes and writes them into the zip entry CHUNK at a time.

    In the background (SQLite), a thread does the writing: deflate and the CRC release the
    GIL, so compressing one chunk overlaps formatting the next, on the second core. The queue
    holds two chunks, so memory stays flat. PostgreSQL formats on its own core already: there
    the writing stays in line with the COPY stream.
    """

    def __init__(self, entry: IO[bytes], path: str, *, background: bool) -> None:
        self._entry = entry
        self._path = path
        self._buf = bytearray()
        self._error: BaseException | None = None
        self._queue: queue.Queue[bytearray | None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=2)
            self._thread = threading.Thread(target=self._run, name="crmwatch-bulk-zip",
                                            daemon=True)
            self._thread.start()

    def write(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= CHUNK:
            chunk, self._buf = self._buf, bytearray()
            self._send(chunk)

    def close(self) -> None:
        """Write what is left and stop the thread; raises a write error."""
        if self._buf:
            chunk, self._buf = self._buf, bytearray()
            self._send(chunk)
        self._stop()
        self._check()

    def abort(self) -> None:
        """Stop the thread, writing nothing more."""
        self._error = self._error or ExportError("the export was abandoned", None, "abandoned")
        self._stop()

    def _send(self, chunk: bytearray) -> None:
        self._check()
        if self._queue is None:
            self._write(chunk)
        else:
            self._queue.put(chunk)

    def _write(self, chunk: bytearray) -> None:
        try:
            with _writing(self._path):
                self._entry.write(chunk)
        except ExportError as exc:
            self._error = exc
            raise

    def _run(self) -> None:
        assert self._queue is not None
        while (chunk := self._queue.get()) is not None:
            if self._error is None:  # after an error, only drain the queue
                try:
                    self._write(chunk)
                except BaseException as exc:  # raised again in the caller's thread
                    self._error = self._error or exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _stop(self) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None


def _make_dir(path: str) -> None:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError as exc:  # a file where the directory should be
        reason = os.strerror(errno.ENOTDIR)
        raise ExportError(f"the bulk read results directory {path} is not a directory",
                          errno.ENOTDIR, reason) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ExportError(f"cannot create the bulk read results directory {path}: {reason}",
                          exc.errno, reason) from exc
    check_dir(path)


def check_dir(path: str) -> None:
    """Refuse a results directory that another user owns or may write (or a symbolic link
    another user made): they could read, replace or remove the results. A missing one passes."""
    try:
        found = [os.lstat(path), os.stat(path)]
    except FileNotFoundError:
        return
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ExportError(f"cannot read the bulk read results directory {path}: {reason}",
                          exc.errno, reason) from exc
    me = os.geteuid()
    problem = next((f"is owned by uid {st.st_uid}, not by this server's uid {me}"
                    for st in found if st.st_uid != me), None)
    writable = stat.S_IMODE(found[1].st_mode) & 0o022
    if problem is None and writable:
        problem = (f"is writable by other users (mode "
                   f"{stat.S_IMODE(found[1].st_mode):04o})")
    if problem is not None:
        raise ExportError(f"the bulk read results directory {path} {problem}: refused; give "
                          f"bulk_results_dir a directory only this user can write",
                          errno.EACCES, "the results directory is not private to the server")


def _create_private(path: str) -> IO[bytes]:
    """A new file, readable and writable by this user only (results may hold any record)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _write_zip(spec: dict[str, Any], file: IO[bytes], final: str) -> Page:
    """The zip with the page's CSV, into `file`; the page's count, more and last id."""
    reader = (_postgres_page if spec["database_url"].startswith("postgres") else _sqlite_page)
    with _writing(final):
        zf = zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL)
        entry = zf.open(f"{spec['id']}.csv", "w", force_zip64=True)
    sink = _Sink(entry, final, background=reader is _sqlite_page)
    try:
        sink.write(cells.header(spec["plan"]["columns"]))
        page = reader(spec, sink.write)
        sink.close()
    except BaseException:
        sink.abort()
        for close in (entry.close, zf.close):  # the file is thrown away: only release it
            with contextlib.suppress(Exception):
                close()
        raise
    with _writing(final):
        entry.close()
        zf.close()
    return page


def _postgres_page(spec: dict[str, Any], write: Write) -> Page:
    from crmwatch.bulk import pgexport

    return pgexport.copy_page(spec, write)


def export(spec: dict[str, Any], out_dir: str | None = None) -> ExportResult:
    """Write the job's page to `<dir>/<id>.zip` (see the module docstring for which dir).

    Raises criteria.CriteriaError for a criteria the stored field types no longer accept,
    ExportError when the file cannot be written, and the driver's error when the database
    fails; in every case no file is left behind.
    """
    target = spec.get("out_dir") or out_dir or results_dir(spec["database_url"])
    final = os.path.join(target, f"{spec['id']}.zip")
    _make_dir(target)
    partial = _partial_name(final)
    with _writing(final):
        file = _create_private(partial)  # closed below, on every path
    try:
        try:
            count, more, last_id = _write_zip(spec, file, final)
            with _writing(final):
                file.flush()
                os.fsync(file.fileno())
        except BaseException:
            with contextlib.suppress(Exception):
                file.close()
            raise
        with _writing(final):
            file.close()
            os.replace(partial, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    _sync_dir(target)
    return ExportResult(count, more, final, last_id)


def _partial_name(final: str) -> str:
    return f"{final}.{os.getpid()}.{secrets.token_hex(4)}.part"


def remove_partials(final: str) -> None:
    """Remove the partial files of earlier attempts at `final` (their processes died while
    writing): call once the job is complete, when no export writes them any more."""
    for path in glob.glob(glob.escape(final) + ".*.part"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _sync_dir(path: str) -> None:
    """Make the rename durable, where the file system allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
