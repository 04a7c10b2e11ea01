"""Bulk Read job documents and rules, shared by the API and the runner. Pure.

`job_json` is the job object of the status answer and of the callback body (Zoho sends the
same object both ways, spec/bulk-read.md §5, §8). `DownloadLimit` is Zoho's download rule:
N downloads a minute, then 429 until the minute is over.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from crmwatch.domain import clock
from crmwatch.domain.states import BulkState
from crmwatch.domain.versions import parse_version
from crmwatch.store.bulk import Job


def failure_reason(exc: BaseException) -> str:
    """What a FAILURE says about its cause: the OS's words for I/O errors (no file paths),
    else the exception's type and text."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def job_json(job: Job) -> dict[str, Any]:
    """The job as Zoho's status answer (and callback body) shows it."""
    tz = clock.zone(job.plan["tz"])
    out: dict[str, Any] = {
        "id": str(job.id), "operation": "read", "state": job.state.value, "query": job.query,
        "created_by": job.created_by, "created_time": clock.format_ms(job.created_time, tz),
        "file_type": job.file_type}
    if job.callback is not None:
        out["callback"] = job.callback
    if job.state is BulkState.COMPLETED:
        result: dict[str, Any] = {
            "page": job.page, "per_page": job.per_page, "count": job.count,
            "download_url": f"/crm/bulk/{job.api_version}/read/{job.id}/result",
            "more_records": bool(job.more_records)}
        version = parse_version(job.api_version)
        if job.page_token and version is not None and version.has_bulk_page_token:
            result["next_page_token"] = job.page_token
        out["result"] = result
    elif job.state is BulkState.FAILURE:
        details = {"reason": job.error} if job.error else {}
        out["result"] = {"error_message": {
            "status": "error", "code": "INTERNAL_SERVER_ERROR",
            "message": "Internal server error occurred.", "details": details}}
    return out


def callback_body(job: Job) -> dict[str, Any]:
    return {"data": [job_json(job)]}


def result_expired(job: Job, now_ms: int) -> bool:
    """Whether the job's result (and so its next_page_token) is past its retention; a job
    without a result has nothing to expire."""
    return job.expires_time is not None and now_ms >= job.expires_time


@dataclass
class DownloadLimit:
    """At most `per_minute` downloads in any minute per key (an org); `per_minute` 0: none.

    `check` answers None when a download may go ahead (and counts it), else the seconds to
    wait: until a minute after the oldest download of the full window, as Zoho blocks
    downloads "for one minute" once the limit is crossed.
    """

    per_minute: int
    window_ms: int = 60_000
    _seen: dict[int, deque[int]] = field(default_factory=dict)

    def check(self, key: int, now_ms: int) -> float | None:
        if self.per_minute <= 0:
            return None
        seen = self._seen.setdefault(key, deque())
        while seen and seen[0] <= now_ms - self.window_ms:
            seen.popleft()
        if len(seen) >= self.per_minute:
            return max(0.001, (seen[0] + self.window_ms - now_ms) / 1000)
        seen.append(now_ms)
        return None
