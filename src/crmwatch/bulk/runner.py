"""The Bulk Read runner: claims jobs, exports them in a child process, calls back, expires.

The export is CPU-bound (JSON decoding, CSV, deflate): it runs in a process of its own (a
`spawn` ProcessPoolExecutor with one worker), so it never holds the server's GIL.

Any number of runners (one per `serve` or `worker` process) share the jobs table. A runner
claims a job under a lease (store/bulk.py) and renews it while the export runs; when a
runner dies, its job is taken over by another runner (or by itself after a restart) once the
lease has lapsed, and a job that kept killing its runners is failed after
`bulk_max_attempts`. A runner that stops cleanly gives its job back at once.

Callbacks go out through the webhook sender (same timeouts, address deny list and signing as
notifications) and are retried on the webhook retry schedule; the job row is the outbox, so
a callback owed when the process dies is sent after the restart. Results are removed
`bulk_result_retention_hours` after the job completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import random
import secrets
import socket
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import orjson

from crmwatch.bulk import child, csvzip
from crmwatch.bulk.jobs import callback_body, failure_reason
from crmwatch.config import Settings
from crmwatch.delivery import signing
from crmwatch.delivery.sender import Sender
from crmwatch.delivery.worker import retry_schedule
from crmwatch.store import bulk as store_bulk
from crmwatch.store import deliveries as store_deliveries

log = logging.getLogger(__name__)

EXPIRY_SWEEP_S = 30.0


def _now_ms() -> int:
    return int(time.time() * 1000)


def results_dir(settings: Settings) -> str:
    return settings.bulk_results_dir or csvzip.results_dir(settings.database_url)


class BulkRunner:
    def __init__(self, settings: Settings, store: Any, *, poll_seconds: float = 1.0,
                 executor: Executor | None = None, sender: Sender | None = None) -> None:
        self.settings = settings
        self.store = store
        self.poll_seconds = poll_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease_ms = max(1, int(settings.bulk_lease_seconds * 1000))
        self.retention_ms = int(settings.bulk_result_retention_hours * 3_600_000)
        self.schedule = retry_schedule(settings)
        self._jitter = random.Random()
        """Its own generator: the process-wide one belongs to the application."""
        self._sweep_s = min(EXPIRY_SWEEP_S, max(0.2, self.retention_ms / 4000))
        """How often expired results are looked for: a fraction of a short retention."""
        self._executor = executor
        self._own_executor = executor is None
        self._sender = sender
        self._own_sender = sender is None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._wake_callbacks = asyncio.Event()

    async def start(self) -> None:
        if self._tasks:
            return
        try:  # said once at start; every export checks again, and fails while it is so
            csvzip.check_dir(results_dir(self.settings))
        except csvzip.ExportError as exc:
            log.error("%s", exc)
        if self._executor is None:
            self._executor = self._new_executor()
        if self._sender is None:
            self._sender = Sender(self.settings)
            await self._sender.start()
        self._tasks = [
            asyncio.create_task(self._job_loop(), name="crmwatch-bulk-jobs"),
            asyncio.create_task(self._callback_loop(), name="crmwatch-bulk-callbacks"),
        ]

    @staticmethod
    def _new_executor() -> Executor:
        return ProcessPoolExecutor(max_workers=1,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=child.init,
                                   initargs=(os.getpid(),))

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._sender is not None and self._own_sender:
            await self._sender.close()
            self._sender = None
        if self._executor is not None and self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _idle(self, event: asyncio.Event) -> None:
        event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self.poll_seconds)

    async def _job_loop(self) -> None:
        while True:
            ids: list[int] = []
            try:
                ids = await self.store.read(store_bulk.runnable(_now_ms(), 10))
                for job_id in ids:
                    await self.run_one(job_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bulk read runner")
                await asyncio.sleep(self.poll_seconds)
            if not ids:
                await self._idle(self._wake)

    async def run_one(self, job_id: int) -> None:
        """Export one job, if this runner can claim it."""
        s = self.settings
        job = await self.store.write(store_bulk.claim(
            job_id, self.owner, _now_ms(), self.lease_ms, s.bulk_max_attempts))
        if job is None:
            return
        spec = csvzip.job_spec(s.database_url, job)
        spec["out_dir"] = results_dir(s)
        if job.after_id is not None:
            spec["after_id"] = job.after_id
        loop = asyncio.get_running_loop()
        heartbeat = asyncio.create_task(self._heartbeat(job_id))
        try:
            result = await loop.run_in_executor(self._executor, csvzip.export, spec)
        except asyncio.CancelledError:
            # Stopping: give the job back so that the next runner starts it at once.
            await asyncio.shield(self.store.write(
                store_bulk.release(job_id, self.owner, _now_ms())))
            raise
        except BrokenProcessPool:
            # The export's process died (killed, out of memory): count it as an attempt and
            # let the lease lapse now, so the job is claimed again, or failed after
            # bulk_max_attempts.
            log.error("bulk read job %s: the export process died", job_id)
            self._replace_executor()
            await self.store.write(store_bulk.renew(job_id, self.owner, _now_ms() - 1))
            return
        except Exception as exc:
            log.warning("bulk read job %s failed: %s", job_id, exc)
            await self.store.write(store_bulk.fail(job_id, self.owner, _now_ms(),
                                                   failure_reason(exc)))
            self._wake_callbacks.set()
            return
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        token = secrets.token_urlsafe(24) if result.more_records else None
        done = await self.store.write(store_bulk.complete(
            job_id, self.owner, _now_ms(), count=result.count, more_records=result.more_records,
            file_path=result.path, last_id=result.last_id, page_token=token,
            retention_ms=self.retention_ms))
        if done is None:
            log.warning("bulk read job %s was taken over by another runner", job_id)
            return
        csvzip.remove_partials(result.path)
        if done.callback_state == "pending":
            self._wake_callbacks.set()

    def _replace_executor(self) -> None:
        if self._own_executor:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()

    async def _heartbeat(self, job_id: int) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                held = await self.store.write(store_bulk.renew(
                    job_id, self.owner, _now_ms() + self.lease_ms))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bulk read job %s: renewing the lease", job_id)
                continue
            if not held:
                log.warning("bulk read job %s: lease lost", job_id)
                return

    async def _callback_loop(self) -> None:
        next_sweep = 0.0
        while True:
            sent = 0
            try:
                sent = await self.send_callbacks()
                if time.monotonic() >= next_sweep:
                    await self.expire_results()
                    next_sweep = time.monotonic() + self._sweep_s
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bulk read callbacks")
                await asyncio.sleep(self.poll_seconds)
            if not sent:
                await self._idle(self._wake_callbacks)

    async def send_callbacks(self) -> int:
        """Send the callbacks that are due (at once, each on its own); how many were taken."""
        now = _now_ms()
        due = await self.store.read(store_bulk.callbacks_due(now, 50))
        hold = now + int((self.settings.delivery_timeout + 30) * 1000)
        jobs = []
        for job_id, due_ms in due:
            job = await self.store.write(store_bulk.claim_callback(job_id, due_ms, hold))
            if job is not None:
                jobs.append(job)
        await asyncio.gather(*(self._callback(job) for job in jobs))
        return len(jobs)

    async def _callback(self, job: store_bulk.Job) -> None:
        assert self._sender is not None and job.callback is not None
        started = _now_ms()
        body = orjson.dumps(callback_body(job))
        keys = await self.store.write(store_deliveries.signing_secrets(
            job.org_id, started, signing.new_secret()))
        msg_id = f"bulk_{job.id}"
        attempt = job.callback_attempts + 1
        headers = signing.headers(keys, msg_id, started // 1000, body)
        headers.update({"Content-Type": "application/json", "User-Agent": "crmwatch",
                        "X-Crmwatch-Bulk-Job-Id": str(job.id),
                        "X-Crmwatch-Attempt": str(attempt)})
        outcome = await self._sender.send(job.callback["url"], body, headers)
        if outcome.ok:
            await self.store.write(store_bulk.set_callback(job.id, "sent", attempt, None, None))
            return
        error = outcome.error or f"HTTP {outcome.status}"
        nxt = self.schedule.next_attempt(
            attempt, _now_ms(), first_attempt_ms=job.finished_time or started,
            retry_after_s=outcome.retry_after_s, jitter=self._jitter.random())
        if nxt is None:
            log.warning("bulk read job %s: callback failed after %d attempts: %s",
                        job.id, attempt, error)
            await self.store.write(store_bulk.set_callback(
                job.id, "failed", attempt, None,
                f"Callback failed after {attempt} attempts. Last: {error}"))
        else:
            await self.store.write(store_bulk.set_callback(job.id, "pending", attempt, nxt,
                                                           error))

    async def expire_results(self) -> int:
        """Remove the results whose retention has passed; how many."""
        gone = await self.store.read(store_bulk.expired_results(_now_ms(), 100))
        for job_id, path in gone:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            await self.store.write(store_bulk.clear_result(job_id, path))
        if gone:
            log.info("bulk read: removed %d expired result(s)", len(gone))
        return len(gone)
