"""The records API: `/crm/{version}/{Module}` and friends, as Zoho CRM shapes them."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmwatch.api.auth import Caller
from crmwatch.api.http import int_param, json_response, no_content, read_json, status_for
from crmwatch.api.state import AppState, state, version
from crmwatch.domain import clock, criteria, paging
from crmwatch.domain import records as rec
from crmwatch.domain.errors import (
    Ambiguity,
    DiscretePaginationLimit,
    InvalidData,
    InvalidModule,
    InvalidQuery,
    InvalidUrlPattern,
    LimitExceeded,
    MandatoryNotFound,
    RequiredParamMissing,
    ZohoError,
)
from crmwatch.domain.modules import Module
from crmwatch.store import records as store_records
from crmwatch.store.records import Ctx, ListQuery

MAX_FIELDS = 50


async def _module(request: Request, operation: str) -> tuple[AppState, Caller, Module, Ctx]:
    st = state(request)
    version(request)
    caller = await st.gate.caller(request)
    name = request.path_params["module"]
    module = caller.tenant.modules.get(name)
    if module is None:
        raise InvalidModule(resource_path_index=0)
    scope_module = caller.tenant.modules.get(module.parent or "") or module
    caller.require("modules", scope_module.scope_name, operation)
    ctx = Ctx(caller.tenant.org, caller.user, caller.tenant.users, caller.tenant.modules,
              st.now_ms(), store_records.new_batch())
    return st, caller, module, ctx


def _fields_param(request: Request, module: Module) -> frozenset[str] | None:
    raw = request.query_params.get("fields")
    if raw is None or raw.strip() == "":
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if len(names) > MAX_FIELDS:
        raise LimitExceeded(param_name="fields", limit=MAX_FIELDS)
    for n in names:
        if n not in module.by_name:
            raise InvalidData("invalid field", api_name=n, param_name="fields")
    return frozenset(names)


def _data_items(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise InvalidData("the body must be a JSON object", expected_data_type="jsonobject")
    if "data" not in body:
        raise RequiredParamMissing(param_name="data")
    items = body["data"]
    if not isinstance(items, list):
        raise InvalidData("invalid data", api_name="data", expected_data_type="jsonarray")
    if not items:
        raise InvalidData("no records given", api_name="data")
    if len(items) > rec.MAX_RECORDS:
        raise LimitExceeded("too many records", limit=rec.MAX_RECORDS, api_name="data")
    return items


def _writable(module: Module) -> None:
    if module.is_subform:
        raise InvalidModule("subform rows are written through their parent record",
                            resource_path_index=0)


def _parse_all(module: Module, ctx: Ctx, items: list[Any], *, creating: bool,
               need_id: bool = False, path_id: int | None = None
               ) -> list[rec.RecordInput | ZohoError]:
    parsed: list[rec.RecordInput | ZohoError] = []
    for i, raw in enumerate(items):
        try:
            inp = rec.parse_input(module, raw, i, creating=creating, modules=ctx.modules)
            if path_id is not None:
                inp = dataclasses.replace(inp, id=path_id)
            elif need_id and inp.id is None:
                raise MandatoryNotFound(api_name="id", json_path=f"$.data[{i}].id")
            parsed.append(inp)
        except ZohoError as err:
            parsed.append(err)
    return parsed


async def create(request: Request) -> Response:
    st, _caller, module, ctx = await _module(request, "CREATE")
    _writable(module)
    items = _data_items(await read_json(request, st.settings.max_body_bytes))
    parsed = _parse_all(module, ctx, items, creating=True)
    results = await _write(st, ctx, module, "insert", parsed)
    return json_response({"data": results}, status_for(results, 201))


async def _write(st: AppState, ctx: Ctx, module: Module, action: str,
                 parsed: list[rec.RecordInput | ZohoError], dup: tuple[str, ...] = ()
                 ) -> list[dict[str, Any]]:
    if all(isinstance(p, ZohoError) for p in parsed):
        return [p.to_json() for p in parsed if isinstance(p, ZohoError)]
    return await st.store.write(  # type: ignore[no-any-return]
        store_records.write_records(ctx, module, action, parsed, dup),
        budget_ms=st.settings.write_flow_budget_ms)


async def update_many(request: Request) -> Response:
    st, _caller, module, ctx = await _module(request, "UPDATE")
    _writable(module)
    items = _data_items(await read_json(request, st.settings.max_body_bytes))
    parsed = _parse_all(module, ctx, items, creating=False, need_id=True)
    results = await _write(st, ctx, module, "update", parsed)
    return json_response({"data": results}, status_for(results, 200))


def _path_id(request: Request) -> int:
    raw = request.path_params["record_id"]
    if not clock.is_record_id(raw):
        raise InvalidUrlPattern()
    return int(raw)


async def update_one(request: Request) -> Response:
    st, _caller, module, ctx = await _module(request, "UPDATE")
    _writable(module)
    record_id = _path_id(request)
    items = _data_items(await read_json(request, st.settings.max_body_bytes))
    parsed = _parse_all(module, ctx, items[:1], creating=False, path_id=record_id)
    results = await _write(st, ctx, module, "update", parsed)
    return json_response({"data": results}, status_for(results, 200))


async def upsert(request: Request) -> Response:
    st, _caller, module, ctx = await _module(request, "CREATE")
    _writable(module)
    body = await read_json(request, st.settings.max_body_bytes)
    items = _data_items(body)
    dup = body.get("duplicate_check_fields")
    if dup is None:
        checks = module.duplicate_check_fields()
    elif isinstance(dup, list) and all(isinstance(d, str) and d in module.by_name
                                       for d in dup):
        checks = tuple(dup)
    else:
        raise InvalidData("invalid duplicate_check_fields", api_name="duplicate_check_fields")
    parsed = _parse_all(module, ctx, items, creating=False)
    results = await _write(st, ctx, module, "upsert", parsed, checks)
    ok = [r for r in results if r.get("status") == "success"]
    success = 201 if ok and all(r.get("action") == "insert" for r in ok) else 200
    return json_response({"data": results}, status_for(results, success))


def _ids_param(request: Request) -> list[int | ZohoError]:
    raw = request.query_params.get("ids")
    if raw is None or not raw.strip():
        raise RequiredParamMissing(param_name="ids")
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if len(parts) > rec.MAX_RECORDS:
        raise LimitExceeded("too many ids", param_name="ids", limit=rec.MAX_RECORDS)
    out: list[int | ZohoError] = []
    for p in parts:
        out.append(int(p) if clock.is_record_id(p) else
                   InvalidData("the id given seems to be invalid", id=p))
    return out


async def delete_many(request: Request) -> Response:
    st, _caller, module, ctx = await _module(request, "DELETE")
    _writable(module)
    ids = _ids_param(request)
    results = await st.store.write(store_records.delete_records(ctx, module, ids),
                                   budget_ms=st.settings.write_flow_budget_ms)
    return json_response({"data": results}, status_for(results, 200))


async def delete_one(request: Request) -> Response:
    st, _caller, module, ctx = await _module(request, "DELETE")
    _writable(module)
    results = await st.store.write(store_records.delete_records(ctx, module,
                                                                [_path_id(request)]),
                                   budget_ms=st.settings.write_flow_budget_ms)
    return json_response({"data": results}, status_for(results, 200))


async def get_one(request: Request) -> Response:
    st, _caller, module, ctx = await _module(request, "READ")
    record = await st.store.read(store_records.get_record(ctx, module, _path_id(request)))
    if record is None:
        return no_content()
    return json_response({"data": [record]})


def _page_window(request: Request, st: AppState, caller: Caller, module: Module,
                 binding: str, now_ms: int) -> tuple[int, int, int, bool]:
    """(page, per_page, offset, by_token) from page/per_page/page_token."""
    per_page = int_param(request, "per_page", 200, 1, 200)
    token = request.query_params.get("page_token")
    if token:
        if "page" in request.query_params:
            raise Ambiguity("page and page_token cannot be used together",
                            param_names=["page", "page_token"])
        cursor = paging.decode(token, binding, now_ms, st.settings.page_token_record_limit)
        return cursor.offset // per_page + 1, per_page, cursor.offset, True
    page = int_param(request, "page", 1, 1, 10**6)
    offset = (page - 1) * per_page
    limit = st.settings.discrete_page_limit
    if limit and offset >= limit:
        raise DiscretePaginationLimit(limit=limit)
    return page, per_page, offset, False


def _info(request: Request, ctx: Ctx, page: int, per_page: int, count: int, more: bool,
          next_token: str | None, sort_by: str, sort_order: str) -> dict[str, Any]:
    info: dict[str, Any] = {"per_page": per_page, "count": count, "page": page,
                            "more_records": more}
    if version(request).has_page_token:
        info.update({"next_page_token": next_token,
                     "previous_page_token": None,
                     "page_token_expiry": clock.format_ms(
                         ctx.now_ms + paging.TOKEN_SECONDS * 1000, ctx.tz) if next_token
                     else None,
                     "sort_by": sort_by, "sort_order": sort_order,
                     "call": False, "email": False})
    return info


async def list_records(request: Request) -> Response:
    st, caller, module, ctx = await _module(request, "READ")
    q = request.query_params
    only = _fields_param(request, module)
    sort_by = q.get("sort_by") or "id"
    if sort_by not in ("id", "Created_Time", "Modified_Time"):
        raise InvalidData("invalid sort_by", param_name="sort_by",
                          supported_values=["id", "Created_Time", "Modified_Time"])
    sort_order = q.get("sort_order") or "desc"
    if sort_order not in ("asc", "desc"):
        raise InvalidData("invalid sort_order", param_name="sort_order",
                          supported_values=["asc", "desc"])
    if q.get("cvid") and q.get("sort_by"):
        raise Ambiguity("cvid and sort_by cannot be used together")
    ids: tuple[int, ...] = ()
    if q.get("ids"):
        parsed = _ids_param(request)
        bad = [p for p in parsed if isinstance(p, ZohoError)]
        if bad:
            raise bad[0]
        ids = tuple(p for p in parsed if isinstance(p, int))
    since: int | None = None
    header = request.headers.get("if-modified-since")
    if header:
        try:
            since = clock.to_ms(clock.parse_datetime(header))
        except ValueError:
            raise InvalidData("If-Modified-Since must be ISO 8601 with an offset",
                              header_name="If-Modified-Since") from None
    bind = paging.binding(module.api_name, sort_by, sort_order, ids, since, caller.user.id,
                          q.get("fields"))
    page, per_page, offset, _by_token = _page_window(request, st, caller, module, bind,
                                                     ctx.now_ms)
    rows, more = await st.store.read(store_records.list_rows(ctx, module, ListQuery(
        page=page, per_page=per_page, offset=offset, sort_by=sort_by, sort_order=sort_order,
        ids=ids, modified_since_ms=since)))
    if not rows:
        return no_content()
    tz = ctx.tz
    data = [rec.render(module, r.id, r.data, r.created_time, r.modified_time, tz, only)
            for r in rows]
    next_token = None
    if more and version(request).has_page_token:
        next_token = paging.encode(paging.Cursor(
            offset + per_page, bind, ctx.now_ms + paging.TOKEN_SECONDS * 1000))
    return json_response({"data": data, "info": _info(
        request, ctx, page, per_page, len(data), more, next_token, sort_by, sort_order)})


def _search_node(request: Request, caller: Caller, module: Module) -> Any:
    q = request.query_params
    given = [k for k in ("criteria", "email", "phone", "word") if q.get(k)]
    if not given:
        raise RequiredParamMissing("one of criteria, email, phone or word is required",
                                   param_names=["criteria", "email", "phone", "word"])
    if len(given) > 1:
        raise Ambiguity("give only one of criteria, email, phone or word",
                        param_names=given)
    types = caller.tenant.types(module)
    kind = given[0]
    value = q[kind]
    if "\x00" in value:
        raise InvalidQuery("NUL characters are not allowed", param_name=kind)
    if kind == "criteria":
        try:
            return criteria.parse_search(value, types)
        except criteria.CriteriaError as err:
            raise _criteria_error(err) from None
    wanted = {"email": ("email",), "phone": ("phone",),
              "word": ("text", "textarea", "email", "phone", "website", "picklist")}[kind]
    op = "equals" if kind == "email" else "contains"
    conds = tuple(criteria.Condition(f.api_name, op, (value,)) for f in module.fields
                  if f.data_type in wanted and not f.system)
    if not conds:
        raise InvalidQuery("the module has no field to search", param_name=kind)
    return criteria.Group("or", conds) if len(conds) > 1 else conds[0]


def _criteria_error(err: criteria.CriteriaError) -> ZohoError:
    out = InvalidQuery(err.message, **err.details)
    out.code = err.code
    return out


async def search(request: Request) -> Response:
    st, caller, module, ctx = await _module(request, "READ")
    node = _search_node(request, caller, module)
    only = _fields_param(request, module)
    bind = paging.binding(module.api_name, "search", str(request.query_params))
    page, per_page, offset, _ = _page_window(request, st, caller, module, bind, ctx.now_ms)
    rows, more = await st.store.read(store_records.list_rows(ctx, module, ListQuery(
        page=page, per_page=per_page, offset=offset, sort_by="id", sort_order="asc",
        where=node, field_types=caller.tenant.types(module))))
    if not rows:
        return no_content()
    tz = ctx.tz
    data = [rec.render(module, r.id, r.data, r.created_time, r.modified_time, tz, only)
            for r in rows]
    return json_response({"data": data, "info": {"per_page": per_page, "count": len(data),
                                                 "page": page, "more_records": more}})


async def deleted(request: Request) -> Response:
    st, _caller, module, ctx = await _module(request, "READ")
    kind = request.query_params.get("type", "all")
    if kind not in ("all", "recycle", "permanent"):
        raise InvalidData("invalid type", param_name="type",
                          supported_values=["all", "recycle", "permanent"])
    per_page = int_param(request, "per_page", 200, 1, 200)
    page = int_param(request, "page", 1, 1, 10**6)
    if kind == "permanent":
        return no_content()
    data, more = await st.store.read(store_records.list_deleted(ctx, module, page, per_page))
    if not data:
        return no_content()
    return json_response({"data": data, "info": {"per_page": per_page, "count": len(data),
                                                 "page": page, "more_records": more}})


class ModuleConvertor(Convertor[str]):
    """A module name in a records path; never one of the API's own first segments, so the
    records routes can be matched first (they take most of the traffic)."""

    regex = r"(?!(?:org|users|settings|actions)(?:/|$))[A-Za-z][A-Za-z0-9_]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("module", ModuleConvertor())

routes = [
    Route("/crm/{version}/{module:module}/{record_id}", get_one, methods=["GET"]),
    Route("/crm/{version}/{module:module}", create, methods=["POST"]),
    Route("/crm/{version}/{module:module}/{record_id}", update_one, methods=["PUT"]),
    Route("/crm/{version}/{module:module}", list_records, methods=["GET"]),
    Route("/crm/{version}/{module:module}", update_many, methods=["PUT"]),
    Route("/crm/{version}/{module:module}", delete_many, methods=["DELETE"]),
    Route("/crm/{version}/{module:module}/{record_id}", delete_one, methods=["DELETE"]),
]
"""The record routes; `/upsert`, `/deleted` and `/search` come before them (`special`)."""

special = [
    Route("/crm/{version}/{module:module}/upsert", upsert, methods=["POST"]),
    Route("/crm/{version}/{module:module}/deleted", deleted, methods=["GET"]),
    Route("/crm/{version}/{module:module}/search", search, methods=["GET"]),
]
