"""The Bulk Read API: `/crm/bulk/{version}/read`, as Zoho CRM shapes it (spec/bulk-read.md).

Validation failures of a create come back inside `{"data": [error]}`; request-level failures
(auth, unreadable body, unknown job) at top level.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from crmwatch.api.auth import Caller
from crmwatch.api.http import json_response, read_json
from crmwatch.api.state import AppState, state, version
from crmwatch.domain import clock, criteria
from crmwatch.domain.errors import ZohoError
from crmwatch.domain.modules import Module
from crmwatch.domain.states import BulkState
from crmwatch.store import bulk as store_bulk

MAX_PAGE = 50
UNSUPPORTED_TYPES = frozenset({"subform"})


class BulkError(ZohoError):
    """A Bulk Read error with Zoho's code."""

    def __init__(self, code: str, message: str, status: int = 400, **details: object) -> None:
        super().__init__(message, **details)
        self.code = code
        self.status_code = status


def _not_found() -> BulkError:
    return BulkError("RESOURCE_NOT_FOUND", "The requested resource doesn't exist.", 404)


async def _caller(request: Request) -> tuple[AppState, Caller]:
    st = state(request)
    version(request)
    caller = await st.gate.caller(request)
    caller.require("bulk", None, "READ")
    return st, caller


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


def _page(raw: Any) -> int:
    if raw is None:
        return 1
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_PAGE:
        raise BulkError("PAGE_RANGE_EXCEEDED",
                        f"Invalid page number for query. Page {raw} is not supported for the "
                        f"query. Page range is from 1 to {MAX_PAGE}.",
                        api_name="page", json_path="$.query.page")
    return raw


def _callback(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    url = raw.get("url") if isinstance(raw, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise BulkError("INVALID_CALLBACK_URL", f"Invalid URL '{url}' for callback.",
                        api_name="url", json_path="$.callback.url")
    method = raw.get("method", "post")
    if not isinstance(method, str) or method.lower() != "post":
        raise BulkError("INVALID_CALLBACK_METHOD",
                        f"Invalid request method {method} for callback.",
                        api_name="method", json_path="$.callback.method")
    return {"url": url, "method": "post"}


def _parse(caller: Caller, body: Any) -> dict[str, Any]:
    if body is None:
        raise BulkError("REQUEST_BODY_IS_EMPTY", "Request body is empty.")
    if not isinstance(body, dict):
        raise BulkError("REQUEST_BODY_NOT_READABLE", "Unable to parse the request body.")
    query = body.get("query")
    if not isinstance(query, dict):
        raise BulkError("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                        api_name="query", json_path="$.query")
    module = _module(caller, query.get("module"))
    caller.require("modules", module.scope_name, "READ")
    columns = _columns(module, query.get("fields"))
    types = caller.tenant.types(module)
    if query.get("criteria") is not None:
        _criteria(query["criteria"], types)
    page = _page(query.get("page"))
    file_type = body.get("file_type", "csv")
    if file_type != "csv":
        raise BulkError("INVALID_DATA", "only csv exports are supported", api_name="file_type",
                        json_path="$.file_type")
    echo: dict[str, Any] = {"module": {"id": str(module.id), "api_name": module.api_name},
                            "page": page}
    if query.get("fields"):
        echo["fields"] = [c[0] for c in columns]
    if query.get("criteria") is not None:
        echo["criteria"] = query["criteria"]
    return {"module": module, "query": echo, "columns": columns, "types": types,
            "page": page, "file_type": file_type, "callback": _callback(body.get("callback"))}


def _job_json(job: store_bulk.Job, v: str) -> dict[str, Any]:
    tz = clock.zone(job.plan["tz"])
    out: dict[str, Any] = {
        "id": str(job.id), "operation": "read", "state": job.state.value, "query": job.query,
        "created_by": job.created_by, "created_time": clock.format_ms(job.created_time, tz),
        "file_type": job.file_type}
    if job.callback is not None:
        out["callback"] = job.callback
    if job.state is BulkState.COMPLETED:
        out["result"] = {"page": job.page, "per_page": job.per_page, "count": job.count,
                         "download_url": f"/crm/bulk/{v}/read/{job.id}/result",
                         "more_records": bool(job.more_records)}
    elif job.state is BulkState.FAILURE:
        out["result"] = {"error_message": {
            "status": "error", "code": "INTERNAL_SERVER_ERROR",
            "message": "Internal server error occurred.", "details": {}}}
    return out


async def create(request: Request) -> Response:
    st, caller = await _caller(request)
    body = await read_json(request, st.settings.max_body_bytes)
    try:
        parsed = _parse(caller, body)
    except BulkError as err:
        return json_response({"data": [err.to_json()]}, err.status_code)
    org = caller.tenant.org
    created_by = {"id": str(caller.user.id), "name": caller.user.full_name}
    plan = {"columns": parsed["columns"], "types": parsed["types"], "tz": org.timezone}
    job = await st.store.write(store_bulk.create_job(
        org.id, org.id_prefix, parsed["module"].api_name, parsed["query"], parsed["file_type"],
        parsed["callback"], created_by, plan, parsed["page"], st.now_ms()))
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


async def _job(request: Request) -> tuple[store_bulk.Job, str]:
    st, caller = await _caller(request)
    raw = request.path_params["job_id"]
    if not clock.is_record_id(raw):
        raise _not_found()
    job = await st.store.read(store_bulk.get_job(caller.tenant.org.id, int(raw)))
    if job is None:
        raise _not_found()
    return job, request.path_params["version"]


async def status(request: Request) -> Response:
    job, v = await _job(request)
    return json_response({"data": [_job_json(job, v)]})


async def download(request: Request) -> Response:
    job, _v = await _job(request)
    if job.state is not BulkState.COMPLETED or not job.file_path \
            or not os.path.exists(job.file_path):
        raise _not_found()
    return FileResponse(job.file_path, media_type="application/zip",
                        filename=f"{job.id}.zip")


routes = [
    Route("/crm/bulk/{version}/read", create, methods=["POST"]),
    Route("/crm/bulk/{version}/read/{job_id}", status, methods=["GET"]),
    Route("/crm/bulk/{version}/read/{job_id}/result", download, methods=["GET"]),
]
