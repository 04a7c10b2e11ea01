"""An async client of a Zoho-compatible CRM API: OAuth tokens, Zoho-shaped errors, Bulk Read.

Works against crmwatch and against the real Zoho CRM alike, given the accounts URL (where
`/oauth/v2/token` lives) and, optionally, the API URL (else the token answer's `api_domain`).

Errors, each with a one-line `str()`:

    ClientError            anything this client reports
     +-- ApiError          the server answered with an error (Zoho's code and message)
     +-- JobFailed         a Bulk Read job ended in FAILURE
     +-- JobTimeout        a Bulk Read job did not end in time

    async with ZohoClient(creds, accounts_url="https://accounts.zoho.eu") as zoho:
        job = await zoho.create_bulk_read({"query": {"module": {"api_name": "Leads"}}})
        await zoho.wait_bulk_read(job["id"])
        await zoho.download_bulk_read(job["id"], Path("leads.zip"))
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson

DONE_STATES = frozenset({"COMPLETED", "FAILURE"})
DEFAULT_RETRY_AFTER = 60.0
"""Seconds to wait after a 429 without Retry-After: Zoho blocks downloads for a minute."""
REFRESH_MARGIN = 120.0
"""Refresh an access token this many seconds before it expires (the seeds' habit)."""
MAX_IDS = 100
"""Record ids per `GET /{module}?ids=...` call (Zoho's limit)."""
RETRY_STATUSES = frozenset({500, 502, 503, 504})
"""Answers worth another try after a pause (with 429, which waits Retry-After)."""

OnBytes = Callable[[int, int | None], None]
OnState = Callable[[str, str], None]
OnWait = Callable[[float], None]


@dataclass(frozen=True)
class Credentials:
    """A Zoho self client and its refresh token."""

    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)


class ClientError(Exception):
    """Base of every error this client reports."""


class ApiError(ClientError):
    """An error answer, with Zoho's `code`, `message` and `details`."""

    def __init__(self, code: str, message: str, *, status: int | None = None,
                 details: Mapping[str, object] | None = None) -> None:
        self.code = code
        self.message = message
        self.status = status
        self.details = dict(details or {})
        super().__init__(code, message)

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.details.items())
        return f"{self.code}: {self.message}" + (f" ({shown})" if shown else "")


class JobFailed(ClientError):
    """A Bulk Read job ended in FAILURE; `job` is its status document."""

    def __init__(self, job: Mapping[str, Any]) -> None:
        self.job = dict(job)
        result = job.get("result")
        error = result.get("error_message") if isinstance(result, Mapping) else None
        reason = (f"{error.get('code')}: {error.get('message')}"
                  if isinstance(error, Mapping) else "no reason given")
        super().__init__(f"bulk read job {job.get('id')} ended in FAILURE: {reason}")


class JobTimeout(ClientError):
    """A Bulk Read job did not end within the timeout."""


def parse_error(status: int, body: bytes) -> ApiError:
    """The error in an answer: `{"data": [{"code": ...}]}`, top-level `{"code": ...}`, or
    the token endpoint's `{"error": ...}`; anything else becomes `HTTP_<status>`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    item: Any = doc
    if isinstance(doc, dict) and isinstance(doc.get("data"), list) and doc["data"]:
        item = doc["data"][0]
    if isinstance(item, dict) and isinstance(item.get("code"), str):
        details = item.get("details")
        return ApiError(item["code"], str(item.get("message", "")), status=status,
                        details=details if isinstance(details, dict) else None)
    if isinstance(item, dict) and isinstance(item.get("error"), str):
        return ApiError(item["error"], "refused by the token endpoint", status=status)
    text = " ".join(body[:200].decode("utf-8", "replace").split())
    return ApiError(f"HTTP_{status}", text or "no error body", status=status)


def retry_after_seconds(value: str | None, default: float = DEFAULT_RETRY_AFTER) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds only), else `default`."""
    try:
        seconds = float(value) if value is not None else default
    except ValueError:
        return default
    return seconds if 0 <= seconds <= 3600 else default


class ZohoClient:
    """One API: an aiohttp session, an access token refreshed when it expires or is refused."""

    def __init__(self, credentials: Credentials, *, accounts_url: str,
                 api_url: str | None = None, access_token: str | None = None,
                 session: aiohttp.ClientSession | None = None,
                 timeout: aiohttp.ClientTimeout | None = None,
                 concurrency: int = 8, retries: int = 5, max_backoff: float = 30.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """`access_token`, when given, is used until the server refuses it (with `api_url`).

        At most `concurrency` API calls are in flight at once. `call` waits out 429 answers
        (Retry-After) and retries connection failures and 5xx answers up to `retries` times
        with a doubling pause (at most `max_backoff` seconds): a failing server is never
        hammered.
        """
        if access_token and not api_url:
            raise ValueError("an access_token needs the api_url beside it")
        self.credentials = credentials
        self.accounts_url = accounts_url.rstrip("/")
        self._api_url = api_url.rstrip("/") if api_url else None
        self._token = access_token
        self._expires = float("inf") if access_token else 0.0
        self._lock = asyncio.Lock()
        self._session = session
        self._own_session = session is None
        self._timeout = timeout or aiohttp.ClientTimeout(total=None, connect=30, sock_read=300)
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self.retries = retries
        self.max_backoff = max_backoff
        self._sleep = sleep
        self.refreshes = 0
        self.last_date: str | None = None
        """The `Date` header of the latest API answer (the server's clock)."""

    async def __aenter__(self) -> ZohoClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def api_url(self) -> str:
        """The API's base URL: as given, else the `api_domain` of the token answer."""
        if self._api_url is None:
            await self.access_token()
        assert self._api_url is not None
        return self._api_url

    # -- tokens --------------------------------------------------------------------------------

    async def access_token(self) -> str:
        if self._token is not None and time.monotonic() < self._expires:
            return self._token
        return await self._refresh(stale=None)

    async def _refresh(self, stale: str | None) -> str:
        """A new access token, unless another task already replaced `stale` meanwhile."""
        async with self._lock:
            if (self._token is not None and self._token != stale
                    and time.monotonic() < self._expires):
                return self._token
            url = self.accounts_url + "/oauth/v2/token"
            form = {"grant_type": "refresh_token", "client_id": self.credentials.client_id,
                    "client_secret": self.credentials.client_secret,
                    "refresh_token": self.credentials.refresh_token}
            status, body = await self._fetch("POST", url, data=form)
            try:
                answer = orjson.loads(body)
            except orjson.JSONDecodeError:
                answer = None
            # Zoho answers token errors with HTTP 200 and {"error": ...}.
            if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
                err = parse_error(status, body)
                err.message = (f"{url}: {err.message}" if err.code.startswith("HTTP_")
                               else f"token request to {url} refused")
                raise err
            if self._api_url is None:
                domain = answer.get("api_domain")
                if not isinstance(domain, str) or not domain.startswith(("http://", "https://")):
                    raise ClientError("the token answer names no api_domain: give the API URL")
                self._api_url = domain.rstrip("/")
            lifetime = answer.get("expires_in", 3600)
            lifetime = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
            self._token = answer["access_token"]
            self.refreshes += 1
            self._expires = time.monotonic() + max(lifetime - REFRESH_MARGIN, lifetime / 2)
            return self._token

    # -- requests ------------------------------------------------------------------------------

    async def _fetch(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        try:
            async with self.session.request(method, url, **kwargs) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ClientError(f"{method} {url}: {_describe(exc)}") from exc

    async def _open(self, method: str, path: str, body: object = None,
                    extra: Mapping[str, str] | None = None) -> aiohttp.ClientResponse:
        """A response (the caller releases it), after one token refresh on INVALID_TOKEN."""
        url = await self.api_url() + path
        headers = dict(extra or {})
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        for retry in (False, True):
            token = await self.access_token()
            headers["Authorization"] = f"Zoho-oauthtoken {token}"
            try:
                resp = await self.session.request(method, url, data=data, headers=headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ClientError(f"{method} {url}: {_describe(exc)}") from exc
            if resp.status != 401 or retry:
                return resp
            async with resp:
                err = parse_error(resp.status, await resp.read())
            if err.code != "INVALID_TOKEN":
                raise err
            await self._refresh(stale=token)
        raise AssertionError("unreachable")

    async def call(self, method: str, path: str, body: object = None, *,
                   headers: Mapping[str, str] | None = None, retry: bool = True) -> Any:
        """The JSON answer of `method path` (None for an empty answer, e.g. 204); raises
        ApiError for an error status. With `retry`, 429 is waited out and connection failures
        and 5xx answers are tried again (see `__init__`)."""
        status, data, _ = await self.request(method, path, body, headers=headers, retry=retry)
        if not data:
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ApiError(f"HTTP_{status}", "the answer is not JSON", status=status) from None

    async def request(self, method: str, path: str, body: object = None, *,
                      headers: Mapping[str, str] | None = None, retry: bool = True,
                      ) -> tuple[int, bytes, Mapping[str, str]]:
        """(status, body, headers) of a successful answer; ApiError for an error status."""
        attempt = 0
        pause = 0.5
        while True:
            try:
                async with self._slots:
                    resp = await self._open(method, path, body, headers)
                    async with resp:
                        data = await _read(resp)
                        answer_headers = resp.headers
                        status = resp.status
            except ApiError:
                raise
            except ClientError:
                if not retry or attempt >= self.retries:
                    raise
                attempt += 1
                await self._sleep(pause)
                pause = min(pause * 2, self.max_backoff)
                continue
            if "Date" in answer_headers:
                self.last_date = answer_headers["Date"]
            if status < 400:
                return status, data, answer_headers
            err = parse_error(status, data)
            if retry and attempt < self.retries and (
                    status == 429 or err.code == "TOO_MANY_REQUESTS"):
                attempt += 1
                await self._sleep(retry_after_seconds(answer_headers.get("Retry-After"),
                                                      default=min(pause * 4, 60.0)))
                continue
            if retry and attempt < self.retries and status in RETRY_STATUSES:
                attempt += 1
                await self._sleep(pause)
                pause = min(pause * 2, self.max_backoff)
                continue
            raise err

    # -- Bulk Read -----------------------------------------------------------------------------

    async def create_bulk_read(self, body: Mapping[str, Any], *,
                               version: str = "v8") -> dict[str, Any]:
        """Create a job (`{"query": ...}`); returns its `details` (`id`, `state`, ...)."""
        answer = await self.call("POST", f"/crm/bulk/{version}/read", body)
        item = _first(answer)
        if item.get("status") != "success" or not isinstance(item.get("details"), dict):
            raise parse_error(200, orjson.dumps(answer))
        details: dict[str, Any] = item["details"]
        return details

    async def bulk_read_job(self, job_id: str, *, version: str = "v8") -> dict[str, Any]:
        """The job's status document (`state`, `query`, `result` once done)."""
        return _first(await self.call("GET", f"/crm/bulk/{version}/read/{job_id}"))

    async def wait_bulk_read(self, job_id: str, *, version: str = "v8",
                             poll_seconds: float = 5.0, timeout: float = 3600.0,
                             on_state: OnState | None = None) -> dict[str, Any]:
        """Poll until COMPLETED (returns the job) or FAILURE (raises JobFailed).

        Polls at once, then after 0.5 s, doubling up to `poll_seconds`: small jobs end fast.
        `on_state(job_id, state)` hears every change of state, the first one included.
        """
        deadline = time.monotonic() + timeout
        interval = min(0.5, poll_seconds)
        last = None
        while True:
            job = await self.bulk_read_job(job_id, version=version)
            state = str(job.get("state"))
            if state != last and on_state is not None:
                on_state(job_id, state)
            last = state
            if state == "COMPLETED":
                return job
            if state == "FAILURE":
                raise JobFailed(job)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JobTimeout(f"bulk read job {job_id} still {state} after {timeout:g} s")
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 2, poll_seconds)

    async def download_bulk_read(self, job_id: str, dest: Path, *, version: str = "v8",
                                 on_bytes: OnBytes | None = None,
                                 on_wait: OnWait | None = None,
                                 max_waits: int = 5,
                                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                                 ) -> int:
        """Stream the job's zip to `dest` (via `dest.part`); returns its size in bytes.

        `on_bytes(done, total)` is called with 0 first; `total` is None without a
        Content-Length. A 429 waits Retry-After (else 60 s) up to `max_waits` times.
        """
        path = f"/crm/bulk/{version}/read/{job_id}/result"
        part = dest.with_name(dest.name + ".part")
        waits = 0
        while True:
            resp = await self._open("GET", path)
            async with resp:
                if resp.status == 429 and waits < max_waits:
                    await _read(resp)
                    delay = retry_after_seconds(resp.headers.get("Retry-After"))
                    if on_wait is not None:
                        on_wait(delay)
                    waits += 1
                    await sleep(delay)
                    continue
                if resp.status != 200:
                    raise parse_error(resp.status, await _read(resp))
                total = None if "Content-Encoding" in resp.headers else resp.content_length
                done = 0
                if on_bytes is not None:
                    on_bytes(0, total)
                try:
                    with part.open("wb") as f:
                        async for chunk in resp.content.iter_chunked(1 << 16):
                            f.write(chunk)
                            done += len(chunk)
                            if on_bytes is not None:
                                on_bytes(done, total)
                    if total is not None and done != total:
                        raise ClientError(f"download of job {job_id} ended after {done} of "
                                          f"{total} bytes")
                except BaseException as exc:
                    with contextlib.suppress(OSError):
                        part.unlink()
                    if isinstance(exc, aiohttp.ClientError | TimeoutError):
                        raise ClientError(f"GET {resp.url}: {_describe(exc)}") from exc
                    raise
            os.replace(part, dest)
            return done


    # -- records, metadata, notifications, change feed ----------------------------------------

    async def fields(self, module: str, *, version: str = "v8") -> list[dict[str, Any]]:
        """The module's field metadata (`GET /settings/fields?module=`)."""
        answer = await self.call("GET", f"/crm/{version}/settings/fields?module={quote(module)}")
        found = answer.get("fields") if isinstance(answer, dict) else None
        return [f for f in found or [] if isinstance(f, dict)]

    async def users(self, *, version: str = "v8") -> list[dict[str, Any]]:
        """Every user of the org (`GET /users?type=AllUsers`), all pages."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = await self.call("GET", f"/crm/{version}/users?type=AllUsers&page={page}"
                                     "&per_page=200")
            users = answer.get("users") if isinstance(answer, dict) else None
            out += [u for u in users or [] if isinstance(u, dict)]
            info = answer.get("info") if isinstance(answer, dict) else None
            if not users or not isinstance(info, dict) or not info.get("more_records"):
                return out
            page += 1

    async def get_records(self, module: str, ids: Sequence[str], *,
                          fields: Sequence[str] = (), version: str = "v8",
                          ) -> list[dict[str, Any]]:
        """The records of `ids` that exist (`GET /{module}?ids=`, MAX_IDS a call); ids that
        are gone (deleted) are simply absent from the answer."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), MAX_IDS):
            chunk = ids[start:start + MAX_IDS]
            path = f"/crm/{version}/{quote(module)}?ids={','.join(chunk)}&per_page=200"
            if fields:
                path += "&fields=" + quote(",".join(fields))
            answer = await self.call("GET", path)
            data = answer.get("data") if isinstance(answer, dict) else None
            out += [r for r in data or [] if isinstance(r, dict)]
        return out

    async def list_records(self, module: str, *, page_token: str | None = None,
                           page: int | None = None, modified_since: str | None = None,
                           fields: Sequence[str] = (), sort_by: str | None = None,
                           sort_order: str | None = None, per_page: int = 200,
                           version: str = "v8",
                           ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One page of `GET /{module}` (data, info); `modified_since` goes in the
        If-Modified-Since header. An empty answer (204) is ([], {})."""
        params: dict[str, str] = {"per_page": str(per_page)}
        if page_token:
            params["page_token"] = page_token
        elif page is not None:
            params["page"] = str(page)
        if fields:
            params["fields"] = ",".join(fields)
        if sort_by:
            params["sort_by"] = sort_by
        if sort_order:
            params["sort_order"] = sort_order
        headers = {"If-Modified-Since": modified_since} if modified_since else None
        answer = await self.call("GET", f"/crm/{version}/{quote(module)}?{urlencode(params)}",
                                 headers=headers)
        return _page(answer)

    async def deleted_records(self, module: str, *, page: int = 1, per_page: int = 200,
                              version: str = "v8",
                              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One page of `GET /{module}/deleted?type=all` (newest deletion first)."""
        answer = await self.call("GET", f"/crm/{version}/{quote(module)}/deleted?type=all"
                                 f"&page={page}&per_page={per_page}")
        return _page(answer)

    async def enable_watch(self, channel: Mapping[str, Any], *,
                           version: str = "v8") -> dict[str, Any]:
        """Enable (or re-enable, the same `channel_id`) one channel; its `details`."""
        answer = await self.call("POST", f"/crm/{version}/actions/watch",
                                 {"watch": [dict(channel)]})
        items = answer.get("watch") if isinstance(answer, dict) else None
        item = items[0] if isinstance(items, list) and items else None
        if not isinstance(item, dict) or item.get("status") != "success":
            raise parse_error(400, orjson.dumps(item if item is not None else answer))
        details = item.get("details")
        return details if isinstance(details, dict) else {}

    async def changes(self, since: int, limit: int = 1000) -> dict[str, Any]:
        """crmwatch's change feed after `since` (`{"changes": [...], "info": {...}}`)."""
        answer = await self.call("GET", f"/crmwatch/v1/changes?since={since}&limit={limit}")
        if not isinstance(answer, dict) or not isinstance(answer.get("changes"), list):
            raise ApiError("UNEXPECTED_ANSWER", "the change feed answered no changes list")
        return answer

    async def has_change_feed(self) -> bool:
        """Whether the server offers crmwatch's change feed (asked, never assumed)."""
        try:
            answer = await self.call("GET", "/crmwatch/v1/changes?since=0&limit=1",
                                     retry=False)
        except ApiError:
            return False
        info = answer.get("info") if isinstance(answer, dict) else None
        return (isinstance(answer, dict) and isinstance(answer.get("changes"), list)
                and isinstance(info, dict) and isinstance(info.get("head"), int))


async def _read(resp: aiohttp.ClientResponse) -> bytes:
    try:
        return await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ClientError(f"{resp.method} {resp.url}: {_describe(exc)}") from exc


def _first(answer: Any) -> dict[str, Any]:
    """`answer["data"][0]`, or ApiError when the answer has no such object."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise ApiError("UNEXPECTED_ANSWER", f"no data[0] object in {str(answer)[:200]}")
    item: dict[str, Any] = data[0]
    return item


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _page(answer: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A listing answer's records and `info`; empty for anything else (such as 204)."""
    if not isinstance(answer, dict):
        return [], {}
    data, info = answer.get("data"), answer.get("info")
    return ([r for r in data if isinstance(r, dict)] if isinstance(data, list) else [],
            info if isinstance(info, dict) else {})
