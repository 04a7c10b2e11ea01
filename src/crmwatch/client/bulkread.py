"""Export a module with Bulk Read: build the query, run a job per page, write each page's zip.

Pages hold 200,000 records. With `all_pages`, page 1 goes to `out` (`leads.zip`) and page N
of the run to `out` with `-N` before the suffix (`leads-2.zip`, `leads-3.zip`, ...): each file
is the server's zip as downloaded, one CSV inside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from crmwatch.client.zoho import ZohoClient

LIST_COMPARATORS = frozenset({"in", "not_in", "between", "not_between"})


def parse_criteria(text: str) -> dict[str, Any]:
    """`--criteria`: a Zoho bulk criteria as JSON, or one condition `Field:comparator:value`.

    In the short form the value is everything after the second colon (so date-times keep
    theirs) and is sent as a string; `in`, `not_in`, `between` and `not_between` take
    comma-separated values. Raises ValueError.

    >>> parse_criteria("Company:in:Acme,Beta")
    {'field': {'api_name': 'Company'}, 'comparator': 'in', 'value': ['Acme', 'Beta']}
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("the JSON criteria must be an object")
        return doc
    parts = stripped.split(":", 2)
    if len(parts) != 3 or not parts[0].strip() or not parts[1].strip():
        raise ValueError("expected JSON or Field:comparator:value")
    name, comparator, value = parts[0].strip(), parts[1].strip(), parts[2]
    return {"field": {"api_name": name}, "comparator": comparator,
            "value": value.split(",") if comparator in LIST_COMPARATORS else value}


def build_query(module: str, fields: Sequence[str] = (),
                criteria: Mapping[str, Any] | None = None, page: int = 1) -> dict[str, Any]:
    """The `query` object of a create-job request."""
    query: dict[str, Any] = {"module": {"api_name": module}}
    if fields:
        query["fields"] = list(fields)
    if criteria is not None:
        query["criteria"] = dict(criteria)
    query["page"] = page
    return query


def next_query(query: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The query of the page after `result`, or None when it was the last.

    `query` is the first page's query. A `next_page_token` (v7 and later) is sent on its own,
    as Zoho documents; without one, the same query asks for `result.page + 1`.
    """
    if not result.get("more_records"):
        return None
    token = result.get("next_page_token")
    if isinstance(token, str) and token:
        return {"page_token": token}
    page = _int(result.get("page")) or _int(query.get("page")) or 1
    return {**query, "page": page + 1}


def page_path(out: Path, n: int) -> Path:
    """Where the n-th page of a run goes: `out` itself, then `stem-n.suffix`."""
    return out if n == 1 else out.with_name(f"{out.stem}-{n}{out.suffix}")


@dataclass(frozen=True)
class Page:
    """One job's output."""

    job_id: str
    page: int
    count: int
    more_records: bool
    path: Path
    size: int


class Progress(Protocol):
    """What an export reports while it runs."""

    def state(self, job_id: str, state: str) -> None:
        """The job changed state (ADDED, IN PROGRESS, COMPLETED; the first one too)."""

    def download(self, job_id: str, done: int, total: int | None) -> None:
        """Bytes downloaded so far (0 first); `total` is None when the server does not say."""

    def rate_limited(self, seconds: float) -> None:
        """The download was refused with 429: waiting `seconds` before trying again."""

    def page_done(self, page: Page) -> None:
        """A page's file is written."""


class _Silent:
    def state(self, job_id: str, state: str) -> None:
        pass

    def download(self, job_id: str, done: int, total: int | None) -> None:
        pass

    def rate_limited(self, seconds: float) -> None:
        pass

    def page_done(self, page: Page) -> None:
        pass


async def export(client: ZohoClient, query: Mapping[str, Any], out: Path, *,
                 version: str = "v8", all_pages: bool = False, poll_seconds: float = 5.0,
                 timeout: float = 3600.0, progress: Progress | None = None) -> list[Page]:
    """Run a job for `query` and download its zip to `out`; with `all_pages`, every page
    after it too (see the module docstring for the file names). `timeout` is per job."""
    report = progress or _Silent()
    pages: list[Page] = []
    current: dict[str, Any] | None = dict(query)
    while current is not None:
        details = await client.create_bulk_read({"query": current}, version=version)
        job_id = str(details.get("id"))
        job = await client.wait_bulk_read(job_id, version=version, poll_seconds=poll_seconds,
                                          timeout=timeout, on_state=report.state)
        result = job.get("result")
        result = result if isinstance(result, dict) else {}
        path = page_path(out, len(pages) + 1)

        def on_bytes(done: int, total: int | None, job_id: str = job_id) -> None:
            report.download(job_id, done, total)

        size = await client.download_bulk_read(job_id, path, version=version,
                                               on_bytes=on_bytes, on_wait=report.rate_limited)
        expected = pages[-1].page + 1 if pages else _int(query.get("page")) or 1
        page = Page(job_id, _int(result.get("page")) or expected, _int(result.get("count")) or 0,
                    bool(result.get("more_records")), path, size)
        pages.append(page)
        report.page_done(page)
        current = next_query(query, result) if all_pages else None
    return pages


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
