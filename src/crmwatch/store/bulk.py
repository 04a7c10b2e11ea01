"""Flows for Bulk Read jobs: add, look up, pick up, finish (see domain.states for the moves)."""

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

    @classmethod
    def from_db(cls, r: Sequence[Any]) -> Job:
        return cls(int(r[0]), int(r[1]), str(r[2]), orjson.loads(r[3]), str(r[4]),
                   None if r[5] is None else orjson.loads(r[5]), BulkState(r[6]), int(r[7]),
                   orjson.loads(r[8]), orjson.loads(r[9]), int(r[10]), int(r[11]),
                   None if r[12] is None else int(r[12]),
                   None if r[13] is None else bool(r[13]), r[14], r[15], int(r[16]))


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_job(org_id: int, id_prefix: int, module: str, query: dict[str, Any],
               file_type: str, callback: dict[str, Any] | None, created_by: dict[str, Any],
               plan: dict[str, Any], page: int, now_ms: int) -> Flow[Job]:
    """A new job in state ADDED."""
    (counter,) = yield NextIds(1)
    job_id = clock.make_id(id_prefix, counter)
    yield Query("insert_bulk_job", (
        job_id, org_id, module, _dumps(query), file_type,
        None if callback is None else _dumps(callback), now_ms, _dumps(created_by),
        _dumps(plan), page, PER_PAGE))
    row = yield Query("lock_bulk_job", (job_id,), "one")
    return Job.from_db(row)


def get_job(org_id: int, job_id: int) -> Flow[Job | None]:
    row = yield Query("get_bulk_job", (org_id, job_id), "one")
    return None if row is None else Job.from_db(row)


def jobs_in_state(state: BulkState, limit: int = 100) -> Flow[list[int]]:
    rows = yield Query("bulk_jobs_in_state", (state.value, limit), "all")
    return [int(r[0]) for r in rows]


def move(job_id: int, new: BulkState, now_ms: int, *, count: int | None = None,
         more_records: bool | None = None, file_path: str | None = None,
         error: str | None = None, expect: BulkState | None = None) -> Flow[Job | None]:
    """Move a job to `new` (an allowed move, see domain.states); None when the job is gone or
    not in `expect` (another runner took it)."""
    row = yield Query("lock_bulk_job", (job_id,), "one")
    if row is None:
        return None
    job = Job.from_db(row)
    if expect is not None and job.state is not expect:
        return None
    check_transition(job.state, new)
    yield Query("set_bulk_state", (job_id, new.value, count,
                                   None if more_records is None else int(more_records),
                                   file_path, error, now_ms))
    row = yield Query("lock_bulk_job", (job_id,), "one")
    return Job.from_db(row)


def requeue_running(now_ms: int) -> Flow[list[int]]:
    """Jobs left IN PROGRESS by a runner that died go back to ADDED."""
    ids = yield from jobs_in_state(BulkState.IN_PROGRESS, 10_000)
    for job_id in ids:
        yield from move(job_id, BulkState.ADDED, now_ms, expect=BulkState.IN_PROGRESS)
    return ids
