"""Flows for Bulk Read jobs: add, look up, claim under a lease, finish, call back, expire.

A runner claims a job (ADDED, or IN PROGRESS with a lapsed lease) by moving it to IN PROGRESS
with its own name and a lease it renews while the export runs; a runner that dies stops
renewing and another runner takes the job over. Each claim counts an attempt: a job whose
export keeps killing its runner is failed after `max_attempts` instead of looping.

Finishing a job also queues its callback (when it has one) in the same transaction: the
callback outbox is the job row itself (`callback_state` pending/sent/failed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from crmwatch.domain import clock
from crmwatch.domain.states import BulkState, check_transition
from crmwatch.store.base import Flow, NextIds, Query

PER_PAGE = 200_000


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    org_id: int
    module: str
    query: dict[str, Any]
    file_type: str
    callback: dict[str, Any] | None
    state: BulkState
    created_time: int
    created_by: dict[str, Any]
    plan: dict[str, Any]
    """columns: [[api_name, data_type], ...]; types: {api_name: data_type}; tz: zone name."""
    page: int
    per_page: int
    count: int | None
    more_records: bool | None
    file_path: str | None
    error: str | None
    updated_time: int
    api_version: str
    lease_owner: str | None
    lease_until: int | None
    attempts: int
    after_id: int | None
    """Export the records after this id (a job made from a page token); None: by `page`."""
    last_id: int | None
    finished_time: int | None
    expires_time: int | None
    page_token: str | None
    callback_state: str | None
    callback_attempts: int
    callback_next_ms: int | None
    callback_error: str | None

    @classmethod
    def from_db(cls, r: Sequence[Any]) -> Job:
        def opt_int(v: Any) -> int | None:
            return None if v is None else int(v)

        return cls(
            int(r[0]), int(r[1]), str(r[2]), orjson.loads(r[3]), str(r[4]),
            None if r[5] is None else orjson.loads(r[5]), BulkState(r[6]), int(r[7]),
            orjson.loads(r[8]), orjson.loads(r[9]), int(r[10]), int(r[11]), opt_int(r[12]),
            None if r[13] is None else bool(r[13]), r[14], r[15], int(r[16]), str(r[17]),
            r[18], opt_int(r[19]), int(r[20]), opt_int(r[21]), opt_int(r[22]),
            opt_int(r[23]), opt_int(r[24]), r[25], r[26], int(r[27]), opt_int(r[28]), r[29])


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_job(org_id: int, id_prefix: int, module: str, query: dict[str, Any],
               file_type: str, callback: dict[str, Any] | None, created_by: dict[str, Any],
               plan: dict[str, Any], page: int, now_ms: int, *, api_version: str = "v8",
               after_id: int | None = None, max_active: int = 0, per_page: int = PER_PAGE
               ) -> Flow[Job | None]:
    """A new job in state ADDED; None when the org already has `max_active` (> 0) jobs
    waiting or running (the count and the insert are serialised per org, one flow after
    the other). `per_page` is Zoho's fixed 200,000 but for tests."""
    if max_active > 0:
        yield Query("lock_bulk_admission", (org_id,), "val")
        active = yield Query("count_active_bulk_jobs", (org_id,), "val")
        if int(active or 0) >= max_active:
            return None
    (counter,) = yield NextIds(1)
    job_id = clock.make_id(id_prefix, counter)
    yield Query("insert_bulk_job", (
        job_id, org_id, module, _dumps(query), file_type,
        None if callback is None else _dumps(callback), now_ms, _dumps(created_by),
        _dumps(plan), page, per_page, api_version, after_id))
    row = yield Query("lock_bulk_job", (job_id,), "one")
    return Job.from_db(row)


def get_job(org_id: int, job_id: int) -> Flow[Job | None]:
    row = yield Query("get_bulk_job", (org_id, job_id), "one")
    return None if row is None else Job.from_db(row)


def job_by_token(token: str) -> Flow[Job | None]:
    row = yield Query("bulk_job_by_token", (token,), "one")
    return None if row is None else Job.from_db(row)


def runnable(now_ms: int, limit: int = 10) -> Flow[list[int]]:
    """Jobs a runner may claim: ADDED, or IN PROGRESS under a lease that has lapsed."""
    rows = yield Query("bulk_jobs_runnable", (now_ms, limit), "all")
    return [int(r[0]) for r in rows]


def claim(job_id: int, owner: str, now_ms: int, lease_ms: int, max_attempts: int
          ) -> Flow[Job | None]:
    """Take `job_id` for `owner` under a lease: the job (IN PROGRESS), or None when another
    runner holds it or it has ended. A job already claimed `max_attempts` times (each of its
    runners died) is failed instead, and None returned."""
    row = yield Query("lock_bulk_job", (job_id,), "one")
    if row is None:
        return None
    job = Job.from_db(row)
    lapsed = (job.state is BulkState.IN_PROGRESS and job.lease_until is not None
              and job.lease_until < now_ms)
    if job.state is not BulkState.ADDED and not lapsed:
        return None
    if job.attempts >= max_attempts:
        yield from finish(job, BulkState.FAILURE, now_ms, error=(
            f"the export was interrupted {job.attempts} times (its runner stopped or "
            "crashed each time)"))
        return None
    check_transition(job.state, BulkState.IN_PROGRESS)
    yield Query("set_bulk_running", (job_id, owner, now_ms + lease_ms, now_ms))
    row = yield Query("lock_bulk_job", (job_id,), "one")
    return Job.from_db(row)


def renew(job_id: int, owner: str, until_ms: int) -> Flow[bool]:
    """Extend `owner`'s lease; False when it no longer holds the job."""
    row = yield Query("renew_bulk_lease", (job_id, owner, until_ms), "one")
    return row is not None


def release(job_id: int, owner: str, now_ms: int) -> Flow[None]:
    """Give a job back (the runner is stopping): ADDED again, the attempt not counted."""
    yield Query("release_bulk_job", (job_id, owner, now_ms))


def finish(job: Job, new: BulkState, now_ms: int, *, count: int | None = None,
           more_records: bool | None = None, file_path: str | None = None,
           last_id: int | None = None, page_token: str | None = None,
           error: str | None = None, retention_ms: int = 0) -> Flow[Job]:
    """Move `job` to COMPLETED or FAILURE and queue its callback, in one transaction."""
    check_transition(job.state, new)
    expires = now_ms + retention_ms if file_path is not None else None
    callback_state = None if job.callback is None else "pending"
    yield Query("finish_bulk_job", (
        job.id, new.value, count, None if more_records is None else int(more_records),
        file_path, error, last_id, page_token, now_ms, expires, callback_state,
        None if callback_state is None else now_ms))
    row = yield Query("lock_bulk_job", (job.id,), "one")
    return Job.from_db(row)


def complete(job_id: int, owner: str, now_ms: int, *, count: int, more_records: bool,
             file_path: str, last_id: int | None, page_token: str | None, retention_ms: int
             ) -> Flow[Job | None]:
    """COMPLETED, if `owner` still holds the job (else None: it was taken over)."""
    row = yield Query("lock_bulk_job", (job_id,), "one")
    job = None if row is None else Job.from_db(row)
    if job is None or job.state is not BulkState.IN_PROGRESS or job.lease_owner != owner:
        return None
    return (yield from finish(job, BulkState.COMPLETED, now_ms, count=count,
                              more_records=more_records, file_path=file_path,
                              last_id=last_id, page_token=page_token,
                              retention_ms=retention_ms))


def fail(job_id: int, owner: str | None, now_ms: int, error: str) -> Flow[Job | None]:
    """FAILURE, if `owner` still holds the job (any owner when None)."""
    row = yield Query("lock_bulk_job", (job_id,), "one")
    job = None if row is None else Job.from_db(row)
    if job is None or job.state not in (BulkState.ADDED, BulkState.IN_PROGRESS):
        return None
    if owner is not None and job.lease_owner != owner:
        return None
    return (yield from finish(job, BulkState.FAILURE, now_ms, error=error))


def callbacks_due(now_ms: int, limit: int = 20) -> Flow[list[tuple[int, int]]]:
    rows = yield Query("bulk_callbacks_due", (now_ms, limit), "all")
    return [(int(r[0]), int(r[1])) for r in rows]


def claim_callback(job_id: int, due_ms: int, hold_until_ms: int) -> Flow[Job | None]:
    """Take a due callback: its next attempt time moves to `hold_until_ms`, so no other
    runner sends it meanwhile (and if this one dies, it is sent again after that)."""
    row = yield Query("claim_bulk_callback", (job_id, due_ms, hold_until_ms), "one")
    if row is None:
        return None
    row = yield Query("lock_bulk_job", (job_id,), "one")
    return None if row is None else Job.from_db(row)


def set_callback(job_id: int, state: str, attempts: int, next_ms: int | None,
                 error: str | None) -> Flow[None]:
    yield Query("set_bulk_callback", (job_id, state, attempts, next_ms, error))


def expired_results(now_ms: int, limit: int = 100) -> Flow[list[tuple[int, str]]]:
    rows = yield Query("bulk_results_expired", (now_ms, limit), "all")
    return [(int(r[0]), str(r[1])) for r in rows]


def clear_result(job_id: int, path: str) -> Flow[None]:
    yield Query("clear_bulk_result", (job_id, path))
