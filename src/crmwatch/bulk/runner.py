"""The Bulk Read runner: picks up ADDED jobs and exports them in a child process.

The export is CPU-bound (JSON decoding, CSV, deflate): it runs in a process of its own
(a `spawn` ProcessPoolExecutor with one worker), so it never holds the server's GIL. A job
is moved to IN PROGRESS before it starts and to COMPLETED or FAILURE when it ends; on start
the runner puts back to ADDED the jobs a crashed runner left IN PROGRESS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from crmwatch.bulk import csvzip
from crmwatch.domain.states import BulkState
from crmwatch.store import bulk as store_bulk

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class BulkRunner:
    def __init__(self, settings: Any, store: Any, *, poll_seconds: float = 1.0,
                 executor: Executor | None = None) -> None:
        self.settings = settings
        self.store = store
        self.poll_seconds = poll_seconds
        self._executor = executor
        self._own_executor = executor is None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        if self._task is not None:
            return
        requeued = await self.store.write(store_bulk.requeue_running(_now_ms()))
        if requeued:
            log.info("bulk read: requeued %d interrupted job(s)", len(requeued))
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._task = asyncio.create_task(self._loop(), name="crmwatch-bulk-runner")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._executor is not None and self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _loop(self) -> None:
        while True:
            ids: list[int] = []
            try:
                ids = await self.store.read(store_bulk.jobs_in_state(BulkState.ADDED, 10))
                for job_id in ids:
                    await self.run_one(job_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bulk read runner")
            if not ids:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def run_one(self, job_id: int) -> None:
        """Export one ADDED job (a no-op when another runner took it first)."""
        job = await self.store.write(store_bulk.move(
            job_id, BulkState.IN_PROGRESS, _now_ms(), expect=BulkState.ADDED))
        if job is None:
            return
        spec = csvzip.job_spec(self.settings.database_url, job)
        try:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._executor, csvzip.export, spec)
        except asyncio.CancelledError:
            raise  # left IN PROGRESS: requeued by the next start
        except Exception as exc:
            log.exception("bulk read job %s failed", job_id)
            await self.store.write(store_bulk.move(
                job_id, BulkState.FAILURE, _now_ms(), error=f"{type(exc).__name__}: {exc}"))
            return
        await self.store.write(store_bulk.move(
            job_id, BulkState.COMPLETED, _now_ms(), count=result.count,
            more_records=result.more_records, file_path=result.path))
