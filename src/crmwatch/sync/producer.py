"""The snapshot's producer: a Bulk Read page's CSV parsed and converted in a child process.

Parsing the CSV and converting its cells (cells.snapshot_batch) cost about as much CPU as
writing the rows into the mirror, and both hold the interpreter lock in one process. In a
child process they run on a core of their own while the parent writes, so a page is applied
in about the time of the slower of the two instead of their sum.

The child is started from a fresh interpreter ("spawn": the parent has threads, which a
fork would copy in whatever state they are) before the page's job has ended, so that its
start-up is not waited for; it is handed the zip once downloaded and sends back each batch
as (complete flags, column values, `_record` texts): the records themselves are not sent,
since `cells.Batch` reads them back from the texts when it needs one. Its cyclic garbage
collector is off: a batch makes some hundred thousand objects and no cycles. It ends when
the page is done, when the parent closes the pipe, or when the parent dies (a send that
fails); it ignores SIGINT, which a terminal sends to the whole process group, and leaves
stopping to the parent. A failure in the child comes back to the parent as an error with the child's
traceback in words.
"""

from __future__ import annotations

import csv
import gc
import io
import multiprocessing
import signal
import traceback
import zipfile
from collections.abc import Iterator, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from crmwatch.sync import cells
from crmwatch.sync.cells import FieldSpec


def iter_csv_batches(path: Path, batch: int) -> Iterator[tuple[list[str], list[list[str]]]]:
    """(header, rows) batches of the one CSV in a Bulk Read zip, streamed from the archive."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
        if not names:
            return
        with archive.open(names[0]) as raw, \
                io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            reader = csv.reader(text)
            header = next(reader, None)
            if header is None:
                return
            rows: list[list[str]] = []
            for row in reader:
                rows.append(row)
                if len(rows) >= batch:
                    yield header, rows
                    rows = []
            if rows:
                yield header, rows


class ProducerError(Exception):
    """The child process failed or went away; the message says how."""


def _child(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent stops it
    gc.disable()
    try:
        task = conn.recv()
    except (EOFError, OSError):
        return
    if task is None:
        return
    path, specs, users, batch = task
    try:
        plan: list[tuple[str, int, str]] | None = None
        for header, rows in iter_csv_batches(Path(path), batch):
            if plan is None:
                plan, _ = cells.plan_for(specs, header)
            converted = cells.snapshot_batch(specs, plan, rows, users)
            conn.send(("batch", converted.complete, converted.columns, converted.texts))
        conn.send(("end",))
    except (BrokenPipeError, EOFError):  # the parent is gone or gave up
        return
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            return
    finally:
        conn.close()


class Producer:
    """One page's producer process: `start()` early, `begin()` with the zip, then `next()`
    on a worker thread until it returns None; `close()` always."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child,), daemon=True,
                                 name="crmwatch-sync-producer")
        self._child = child

    def start(self) -> None:
        self._proc.start()
        self._child.close()

    def begin(self, path: Path, specs: list[FieldSpec], users: Mapping[str, cells.User],
              batch: int) -> None:
        self._conn.send((str(path), specs, dict(users), batch))

    def next(self) -> cells.Batch | None:
        """The next batch, or None after the last (blocks: call it on a worker thread)."""
        try:
            item: tuple[Any, ...] = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise ProducerError(f"the snapshot's producer process ended early "
                                f"(exit code {self._proc.exitcode})") from exc
        if item[0] == "batch":
            return cells.Batch(None, item[1], item[2], item[3])
        if item[0] == "end":
            return None
        raise ProducerError(f"the snapshot's producer failed:\n{item[1]}")

    def close(self) -> None:
        """Stop the child (at once if it is still working) and reap it."""
        self._conn.close()
        self._proc.join(2)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
