"""The snapshot: Bulk Read every page of a module into the mirror, in batches, as it streams.

Each page's zip is downloaded to a temporary file, then its CSV is read row by row (never
whole) on a worker thread, converted to the records API's shapes (cells.py) in batches and
applied with the CSV rule (reconcile.csv_verdict) while the next batch is being converted.
From crmwatch, each page is bracketed by change-feed positions read before the job is created
and after it completed (DBLog's watermarks): a record the feed shows changing in between is
left to the feed, whatever its row says.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from crmwatch.client import bulkread
from crmwatch.client.zoho import ZohoClient
from crmwatch.sync import cells
from crmwatch.sync.cells import FieldSpec
from crmwatch.sync.mirror import Mirror

BATCH = 5000
FEED_HEAD = 2**62


class SnapshotProgress(Protocol):
    def snapshot(self, module: str, done: int, total: int | None) -> None:
        """Rows of the current page applied so far, of `total` when known."""


def iter_csv_batches(path: Path, batch: int) -> Iterator[tuple[list[str], list[list[str]]]]:
    """(header, rows) batches of the one CSV in a Bulk Read zip, streamed from the archive."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
        if not names:
            return
        with archive.open(names[0]) as raw:
            text = codecs.getreader("utf-8-sig")(raw)
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


@dataclass
class PageResult:
    count: int
    written: int
    reread: list[str]
    next_query: dict[str, Any] | None


async def feed_head(client: ZohoClient) -> int:
    doc = await client.changes(FEED_HEAD, 1)
    return int(doc["info"]["head"])


async def feed_window(client: ZohoClient, module: str, low: int, high: int) -> frozenset[str]:
    """Ids of `module` the change feed shows changing in (low, high]."""
    ids: set[str] = set()
    since = low
    while since < high:
        doc = await client.changes(since, 1000)
        for change in doc["changes"]:
            if int(change["seq"]) > high:
                return frozenset(ids)
            if change.get("module") == module:
                ids.add(str(change["id"]))
        info = doc["info"]
        if not doc["changes"] or not info.get("more_records"):
            break
        since = int(info["next_since"])
    return frozenset(ids)


def _batches_in_thread(path: Path, specs: list[FieldSpec], users: Mapping[str, cells.User],
                       batch: int, loop: asyncio.AbstractEventLoop,
                       queue: asyncio.Queue[Any], cancelled: threading.Event) -> None:
    """Producer: parse and convert on this thread, hand batches to the loop's queue."""
    try:
        plan: list[tuple[str, int, str]] | None = None
        for header, rows in iter_csv_batches(path, batch):
            if cancelled.is_set():
                return
            if plan is None:
                plan, _ = cells.plan_for(specs, header)
            converted = cells.convert_rows(plan, rows, users)
            asyncio.run_coroutine_threadsafe(queue.put(converted), loop).result()
        asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()
    except BaseException as exc:  # handed to the consumer, which raises it
        asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()


async def run_page(client: ZohoClient, mirror: Mirror, module: str, query: Mapping[str, Any],
                   *, version: str, extras: bool, users: Mapping[str, cells.User],
                   progress: SnapshotProgress, poll_seconds: float = 5.0,
                   batch: int = BATCH, workdir: Path | None = None,
                   on_rows: Callable[[int], None] | None = None) -> PageResult:
    """One Bulk Read page into the mirror (see the module docstring)."""
    low = await feed_head(client) if extras else 0
    details = await client.create_bulk_read({"query": dict(query)}, version=version)
    state = await mirror.module_state(module)
    await mirror.set_module_state(module, exports=int(state.get("exports") or 0) + 1)
    job_id = str(details.get("id"))
    job = await client.wait_bulk_read(job_id, version=version, poll_seconds=poll_seconds)
    high = await feed_head(client) if extras else 0
    window = await feed_window(client, module, low, high) if extras else frozenset()
    result = job.get("result") if isinstance(job.get("result"), dict) else {}
    assert isinstance(result, dict)
    total = result.get("count") if isinstance(result.get("count"), int) else None
    specs = await mirror.specs(module)
    with tempfile.TemporaryDirectory(prefix="crmwatch-sync-", dir=workdir) as tmp:
        path = Path(tmp) / f"{job_id}.zip"
        await client.download_bulk_read(job_id, path, version=version)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
        cancelled = threading.Event()
        producer = loop.run_in_executor(None, _batches_in_thread, path, specs, users, batch,
                                        loop, queue, cancelled)
        done = written = 0
        reread: list[str] = []
        try:
            progress.snapshot(module, 0, total)
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                n, again = await mirror.apply_snapshot(
                    module, item, window, {"snapshot_rows": int(state.get("snapshot_rows") or 0)
                                           + done + len(item)})
                done += len(item)
                written += n
                reread += again
                progress.snapshot(module, done, total)
                if on_rows is not None:
                    on_rows(len(item))
        finally:
            cancelled.set()
            while not producer.done():
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    await asyncio.sleep(0.01)
            await asyncio.gather(producer, return_exceptions=True)
    nxt = bulkread.next_query(query, result)
    return PageResult(done, written, reread, nxt)


def first_query(module: str) -> dict[str, Any]:
    return bulkread.build_query(module)


def dump_query(query: Mapping[str, Any] | None) -> str | None:
    return None if query is None else orjson.dumps(query).decode()
