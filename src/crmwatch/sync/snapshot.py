"""The snapshot: Bulk Read every page of a module into the mirror, in batches, as it streams.

Each page's zip is downloaded to a temporary file, then its CSV is read row by row (never
whole) and converted to the records API's shapes (cells.py) in batches by a child process
(producer.py), while this process applies the batches with the CSV rule
(reconcile.csv_verdict).
From crmwatch, each page is bracketed by change-feed positions read before the job is created
and after it completed (DBLog's watermarks): a record the feed shows changing in between is
left to the feed, whatever its row says.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from crmwatch.client import bulkread
from crmwatch.client.zoho import ZohoClient
from crmwatch.sync import cells
from crmwatch.sync.mirror import Mirror
from crmwatch.sync.producer import Producer

BATCH = 2000
"""Rows a transaction: what the sync and its producer each hold of a page is a batch or two
(about 60 MB together at 2,000 Leads of ~20 fields; 5,000 measured no faster)."""
FEED_HEAD = 2**62


class SnapshotProgress(Protocol):
    def snapshot(self, module: str, done: int, total: int | None) -> None:
        """Rows of the current page applied so far, of `total` when known."""


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


async def run_page(client: ZohoClient, mirror: Mirror, module: str, query: Mapping[str, Any],
                   *, version: str, extras: bool, users: Mapping[str, cells.User],
                   progress: SnapshotProgress, poll_seconds: float = 5.0,
                   batch: int = BATCH, workdir: Path | None = None,
                   on_rows: Callable[[int], None] | None = None) -> PageResult:
    """One Bulk Read page into the mirror (see the module docstring). The page's last batch
    commits together with the snapshot's progress (`snapshot_next`, `snapshot_done`), so a
    stop or a crash never leaves a page applied but not recorded."""
    producer = Producer()
    producer.start()  # while the job runs: its start-up is then not waited for
    try:
        return await _page(client, mirror, module, query, producer, version=version,
                           extras=extras, users=users, progress=progress,
                           poll_seconds=poll_seconds, batch=batch, workdir=workdir,
                           on_rows=on_rows)
    finally:
        producer.close()


async def _page(client: ZohoClient, mirror: Mirror, module: str, query: Mapping[str, Any],
                producer: Producer, *, version: str, extras: bool,
                users: Mapping[str, cells.User], progress: SnapshotProgress,
                poll_seconds: float, batch: int, workdir: Path | None,
                on_rows: Callable[[int], None] | None) -> PageResult:
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
    nxt = bulkread.next_query(query, result)
    finished: dict[str, Any] = {"snapshot_next": dump_query(nxt)}
    if nxt is None:
        finished.update(snapshot_done=1, phase="streaming")
    total = result.get("count") if isinstance(result.get("count"), int) else None
    specs = await mirror.specs(module)
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="crmwatch-sync-", dir=workdir) as tmp:
        path = Path(tmp) / f"{job_id}.zip"
        await client.download_bulk_read(job_id, path, version=version)
        producer.begin(path, specs, users, batch)
        done = written = 0
        reread: list[str] = []
        base_rows = int(state.get("snapshot_rows") or 0)
        progress.snapshot(module, 0, total)
        pending: cells.Batch | None = None
        while True:
            item = await loop.run_in_executor(None, producer.next)
            if pending is not None:  # one batch behind, to know which one is the last
                size = len(pending)
                marks: dict[str, Any] = {"snapshot_rows": base_rows + done + size}
                if item is None:
                    marks.update(finished)
                n, again = await mirror.apply_snapshot(module, pending, window, marks)
                done += size
                written += n
                reread += again
                progress.snapshot(module, done, total)
                if on_rows is not None:
                    on_rows(size)
            if item is None:
                if pending is None:
                    await mirror.set_module_state(module, **finished)
                break
            pending = item
    return PageResult(done, written, reread, nxt)


def first_query(module: str) -> dict[str, Any]:
    return bulkread.build_query(module)


def dump_query(query: Mapping[str, Any] | None) -> str | None:
    return None if query is None else orjson.dumps(query).decode()
