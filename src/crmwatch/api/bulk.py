"""The Bulk Read API: `/crm/bulk/{version}/read`, as Zoho CRM shapes it (spec/bulk-read.md).

Validation failures of a create come back inside `{"data": [error]}`; request-level failures
(auth, unreadable body, unknown job, rate limits) at top level.

Limits where Zoho publishes no figure are settings (docs/configuration.md): jobs waiting or
running per org (`bulk_max_active_jobs`), result retention (`bulk_result_retention_hours`,
which is also a page token's life). Downloads follow Zoho's 10 a minute
(`bulk_downloads_per_minute`), counted per process.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from crmwatch.api.auth import Caller
from crmwatch.api.http import json_response, read_json
from crmwatch.api.state import AppState, state, version
from crmwatch.bulk.jobs import job_json, result_expired
from crmwatch.domain import clock, criteria
from crmwatch.domain.addresses import AddressPolicy
from crmwatch.domain.errors import ScopeMismatch, ZohoError
from crmwatch.domain.modules import Module
from crmwatch.domain.states import BulkState
from crmwatch.domain.versions import ApiVersion
from crmwatch.store import bulk as store_bulk

log = logging.getLogger(__name__)

MAX_PAGE = 50
UNSUPPORTED_TYPES = frozenset({"subform"})


class BulkError(ZohoError):
    """A Bulk Read error with Zoho's code."""

    def __init__(self, code: str, message: str, status: int = 400, **details: object) -> None:
        super().__init__(message, **details)
        self.code = code
        self.status_code = status


def _not_found(**details: object) -> BulkError:
    return BulkError("RESOURCE_NOT_FOUND", "The requested resource doesn't exist.", 404,
                     **details)


async def _caller(request: Request) -> tuple[AppState, Caller, ApiVersion]:
    st = state(request)
    v = version(request)
    caller = await st.gate.caller(request)
    caller.require("bulk", None, "READ")
    return st, caller, v


def _module(caller: Caller, raw: Any) -> Module:
    name = raw.get("api_name") if isinstance(raw, dict) else raw
    if not isinstance(name, str) or not name:
        raise BulkError("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                        api_name="module", json_path="$.query.module")
    module = caller.tenant.modules.get(name)
    if module is None:
        raise BulkError("MODULE_NOT_AVAILABLE", f"Requested module '{name}' is not available.",
                        api_name="module", json_path="$.query.module")
    if module.is_subform:
        raise BulkError("MODULE_NOT_SUPPORTED",
                        f"Invalid module for the query. Module '{name}' is not supported.",
                        api_name="module", json_path="$.query.module")
    return module


def _columns(module: Module, raw: Any) -> list[list[str]]:
    exportable = [f for f in module.fields
                  if f.api_name != "id" and f.data_type not in UNSUPPORTED_TYPES]
    if raw is None or raw == []:
        return [[f.api_name, f.data_type] for f in exportable]
    if not isinstance(raw, list):
        raise BulkError("INVALID_DATA", "invalid data", api_name="fields",
                        json_path="$.query.fields")
    out: list[list[str]] = []
    for i, name in enumerate(raw):
        path = f"$.query.fields[{i}]"
        if not isinstance(name, str):
            raise BulkError("INVALID_DATA", "invalid data", api_name="fields", json_path=path)
        if name == "id" or any(c[0] == name for c in out):
            continue
        f = module.by_name.get(name)
        if "." in name or (f is not None and f.data_type in UNSUPPORTED_TYPES):
            raise BulkError("FIELD_NOT_SUPPORTED",
                            f"Field '{name}' is not supported for the query.",
                            api_name=name, json_path=path)
        if f is None:
            raise BulkError("FIELD_NOT_AVAILABLE", f"Field '{name}' is not available.",
                            api_name=name, json_path=path)
        out.append([f.api_name, f.data_type])
    return out


def _criteria(raw: Any, types: dict[str, str]) -> None:
    try:
        node = criteria.parse_bulk(raw, types)
        criteria.compile_sql(node, "sqlite", types)
    except criteria.CriteriaError as err:
        out = BulkError(err.code, err.message)
        out.details = dict(err.details)
        if err.code == "INVALID_QUERY":
            out.code = "INVALID_CRITERIA"
        raise out from None


def _echo_criteria(module: Module, node: Any) -> Any:
    """A (valid) criteria as the job shows it: leaves as `field: {id, api_name}` whichever
    form they came in, groups as given (spec/bulk-read.md §3)."""
    if not isinstance(node, dict):
        return node
    if "group" in node:
        return {**node, "group": [_echo_criteria(module, n) for n in node["group"]]}
    out = {k: v for k, v in node.items() if k != "api_name"}
    field = node.get("field")
    name = field.get("api_name") if isinstance(field, dict) else node.get("api_name")
    known = module.by_name.get(name) if isinstance(name, str) else None
    out["field"] = {"id": str(known.id) if known is not None and known.id else None,
                    "api_name": name}
    return out


def _page(raw: Any) -> int:
    if raw is None:
        return 1
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_PAGE:
        raise BulkError("PAGE_RANGE_EXCEEDED",
                        f"Invalid page number for query. Page {raw} is not supported for the "
                        f"query. Page range is from 1 to {MAX_PAGE}.",
                        api_name="page", json_path="$.query.page")
    return raw


def _callback(raw: Any, policy: AddressPolicy) -> dict[str, Any] | None:
    """The callback, or INVALID_CALLBACK_URL for a URL that can never be delivered to."""
    if raw is None:
        return None
    url = raw.get("url") if isinstance(raw, dict) else None
    if (not isinstance(url, str) or not url.startswith(("http://", "https://"))
            or policy.url_refusal(url) is not None):
        raise BulkError("INVALID_CALLBACK_URL", f"Invalid URL '{url}' for callback.",
                        api_name="url", json_path="$.callback.url")
    method = raw.get("method", "post")
    if not isinstance(method, str) or method.lower() != "post":
        raise BulkError("INVALID_CALLBACK_METHOD",
                        f"Invalid request method {method} for callback.",
                        api_name="method", json_path="$.callback.method")
    return {"url": url, "method": "post"}


def _body(body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The body and its `query`, or the error Zoho gives for a missing or unreadable one."""
    if body is None:
        raise BulkError("REQUEST_BODY_IS_EMPTY", "Request body is empty.")
    if not isinstance(body, dict):
        raise BulkError("REQUEST_BODY_NOT_READABLE", "Unable to parse the request body.")
    query = body.get("query")
    if not isinstance(query, dict):
        raise BulkError("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                        api_name="query", json_path="$.query")
    return body, query


def _parse(caller: Caller, body: dict[str, Any], query: dict[str, Any],
           policy: AddressPolicy) -> dict[str, Any]:
    module = _module(caller, query.get("module"))
    caller.require("modules", module.scope_name, "READ")
    columns = _columns(module, query.get("fields"))
    types = caller.tenant.types(module)
    if query.get("criteria") is not None:
        _criteria(query["criteria"], types)
    page = _page(query.get("page"))
    if query.get("cvid") not in (None, ""):
        # No custom views exist here: refusing beats exporting the whole module instead.
        raise BulkError("INVALID_DATA", "custom views are not supported", api_name="cvid",
                        json_path="$.query.cvid")
    file_type = body.get("file_type", "csv")
    if file_type != "csv":
        raise BulkError("INVALID_DATA", "only csv exports are supported", api_name="file_type",
                        json_path="$.file_type")
    echo: dict[str, Any] = {"module": {"id": str(module.id), "api_name": module.api_name},
                            "page": page}
    if query.get("fields"):
        echo["fields"] = [c[0] for c in columns]
    if query.get("criteria") is not None:
        echo["criteria"] = _echo_criteria(module, query["criteria"])
    plan = {"columns": columns, "types": types, "tz": caller.tenant.org.timezone}
    return {"module": module.api_name, "query": echo, "plan": plan, "page": page,
            "file_type": file_type, "callback": _callback(body.get("callback"), policy),
            "after_id": None}


def _bad_token(message: str, code: str = "INVALID_DATA") -> BulkError:
    return BulkError(code, message, api_name="page_token", json_path="$.query.page_token")


async def _from_token(st: AppState, caller: Caller, v: ApiVersion, body: dict[str, Any],
                      token: Any) -> dict[str, Any]:
    """The next page of the job that gave out `token` (its query, records after its last)."""
    if not v.has_bulk_page_token:
        raise _bad_token(f"page_token is not supported in {v.name}; it arrived with v7")
    if not isinstance(token, str) or not token:
        raise _bad_token("invalid data")
    prev = await st.store.read(store_bulk.job_by_token(token))
    if (prev is None or prev.org_id != caller.tenant.org.id
            or str(prev.created_by.get("id")) != str(caller.user.id)):
        raise _bad_token("invalid page_token")
    if result_expired(prev, st.now_ms()):
        raise _bad_token("the page_token has expired", "EXPIRED_VALUE")
    module = _module(caller, prev.module)
    caller.require("modules", module.scope_name, "READ")
    page = prev.page + 1
    return {"module": prev.module, "query": {**prev.query, "page": page}, "plan": prev.plan,
            "page": page, "file_type": prev.file_type,
            "callback": _callback(body.get("callback"), st.policy),
            "after_id": prev.last_id}


def _too_many(message: str, retry_after_s: float | None = None) -> Response:
    headers = None if retry_after_s is None else {"Retry-After": str(math.ceil(retry_after_s))}
    return json_response({"code": "TOO_MANY_REQUESTS", "details": {}, "message": message,
                          "status": "error"}, 429, headers)


async def create(request: Request) -> Response:
    st, caller, v = await _caller(request)
    raw = await read_json(request, st.settings.max_body_bytes)
    try:
        body, query = _body(raw)
        if "page_token" in query:
            parsed = await _from_token(st, caller, v, body, query["page_token"])
        else:
            parsed = _parse(caller, body, query, st.policy)
    except BulkError as err:
        return json_response({"data": [err.to_json()]}, err.status_code)
    org = caller.tenant.org
    created_by = {"id": str(caller.user.id), "name": caller.user.full_name}
    job = await st.store.write(store_bulk.create_job(
        org.id, org.id_prefix, parsed["module"], parsed["query"], parsed["file_type"],
        parsed["callback"], created_by, parsed["plan"], parsed["page"], st.now_ms(),
        api_version=v.name, after_id=parsed["after_id"],
        max_active=st.settings.bulk_max_active_jobs))
    if job is None:
        return _too_many("Many requests fired in concurrent than the allowed limit")
    runner = st.bulk
    if runner is not None:
        runner.wake()
    tz = clock.zone(org.timezone)
    return json_response({"data": [{
        "status": "success", "code": "ADDED_SUCCESSFULLY", "message": "Added successfully.",
        "details": {"id": str(job.id), "operation": "read", "state": job.state.value,
                    "created_by": created_by,
                    "created_time": clock.format_ms(job.created_time, tz)}}],
        "info": {}}, 201)


async def _job(request: Request) -> tuple[AppState, store_bulk.Job]:
    st, caller, _v = await _caller(request)
    raw = request.path_params["job_id"]
    if not clock.is_record_id(raw):
        raise _not_found()
    job = await st.store.read(store_bulk.get_job(caller.tenant.org.id, int(raw)))
    if job is None:
        raise _not_found()
    if not caller.may_read(job.module):  # the job's rows are the module's records
        raise ScopeMismatch()
    return st, job


async def status(request: Request) -> Response:
    _st, job = await _job(request)
    return json_response({"data": [job_json(job)]})


async def download(request: Request) -> Response:
    st, job = await _job(request)
    wait = st.bulk_downloads.check(job.org_id, st.now_ms())
    if wait is not None:
        return _too_many("Too many download requests; downloads are blocked for a minute.",
                         wait)
    if job.state is not BulkState.COMPLETED:
        raise _not_found(reason=f"the job is {job.state.value}, not COMPLETED")
    if job.file_path is None or result_expired(job, st.now_ms()):
        raise _not_found(reason="the result has expired")
    if not os.path.exists(job.file_path):
        log.error("bulk read job %s: result file %s is missing (is bulk_results_dir shared "
                  "by every process?)", job.id, job.file_path)
        raise _not_found(reason="the result file is not available on this server")
    return FileResponse(job.file_path, media_type="application/zip",
                        filename=f"{job.id}.zip")


routes = [
    Route("/crm/bulk/{version}/read", create, methods=["POST"]),
    Route("/crm/bulk/{version}/read/{job_id}", status, methods=["GET"]),
    Route("/crm/bulk/{version}/read/{job_id}/result", download, methods=["GET"]),
]
