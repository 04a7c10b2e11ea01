"""The Notification API: `/crm/{version}/actions/watch`, as Zoho CRM shapes it."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmwatch.api.auth import Caller
from crmwatch.api.http import int_param, json_response, no_content, read_json, status_for
from crmwatch.api.state import AppState, state, version
from crmwatch.domain import channels as ch
from crmwatch.domain import clock
from crmwatch.domain.errors import InvalidData, ZohoError
from crmwatch.domain.versions import ApiVersion
from crmwatch.store import channels as store_channels
from crmwatch.store.records import new_batch

MAX_PER_PAGE = 200


async def _caller(request: Request, operation: str) -> tuple[AppState, Caller, ApiVersion]:
    st = state(request)
    v = version(request)
    caller = await st.gate.caller(request)
    caller.require("notifications", None, operation)
    return st, caller, v


async def _write(request: Request, method: ch.Method, operation: str) -> Response:
    st, caller, v = await _caller(request, operation)
    body = await read_json(request, st.settings.max_body_bytes)
    now = st.now_ms()
    modules = caller.tenant.modules
    inputs = ch.parse_request(body, method, v, modules, now, policy=st.policy)
    org = caller.tenant.org
    if all(isinstance(i, ZohoError) for i in inputs):
        outcomes: list[Any] = list(inputs)
    else:
        outcomes = await st.store.write(store_channels.write_channels(
            org.id, inputs, now, new_batch(), caller.user.id,
            max_channels=st.settings.max_channels_per_org))
    tz = clock.zone(org.timezone)
    items = [o.to_json() if isinstance(o, ZohoError) else
             ch.action_item(o[0], o[1], st.base_url, v.name, modules, tz) for o in outcomes]
    return json_response({"watch": items}, status_for(items, 200))


async def enable(request: Request) -> Response:
    return await _write(request, "enable", "CREATE")


async def replace(request: Request) -> Response:
    return await _write(request, "replace", "UPDATE")


async def merge(request: Request) -> Response:
    return await _write(request, "merge", "UPDATE")


async def details(request: Request) -> Response:
    st, caller, v = await _caller(request, "READ")
    q = request.query_params
    page = int_param(request, "page", 1, 1, 10**6)
    per_page = int_param(request, "per_page", MAX_PER_PAGE, 1, MAX_PER_PAGE)
    wanted_id: str | None = None
    if q.get("channel_id"):
        wanted_id = ch.normalise_channel_id(q["channel_id"].strip())
        if wanted_id is None:
            raise InvalidData("invalid data", param_name="channel_id",
                              expected_data_type="long")
    module = q.get("module") or None
    modules = caller.tenant.modules
    if module is not None and ch.resolve_module(module, modules) is None:
        raise InvalidData("the module name given seems to be invalid", param_name="module")
    org = caller.tenant.org
    now = st.now_ms()
    stored = await st.store.read(store_channels.list_channels(org.id))
    tz = clock.zone(org.timezone)
    entries: list[dict[str, Any]] = []
    for channel in ch.live_channels(stored, now):
        if wanted_id is not None and channel.channel_id != wanted_id:
            continue
        entries.extend(ch.get_entries(channel, st.base_url, v.name, modules, tz, module=module))
    start = (page - 1) * per_page
    shown = entries[start:start + per_page]
    if not shown:
        return no_content()
    return json_response({"watch": shown, "info": {
        "per_page": per_page, "count": len(shown), "page": page,
        "more_records": start + per_page < len(entries)}})


async def disable(request: Request) -> Response:
    st, caller, v = await _caller(request, "DELETE")
    ids = ch.parse_channel_ids(request.query_params.get("channel_ids"))
    if len(ids) > ch.MAX_CHANNELS:
        raise InvalidData("too many channel ids", param_name="channel_ids",
                          limit=ch.MAX_CHANNELS)
    org = caller.tenant.org
    outcomes = await st.store.write(store_channels.delete_channels(
        org.id, ids, st.now_ms(), new_batch(), caller.user.id))
    items: list[dict[str, Any]] = []
    for o in outcomes:
        if isinstance(o, ZohoError):
            items.append(o.to_json())
        else:
            items.extend(ch.delete_items(o, st.base_url, v.name, caller.tenant.modules))
    return json_response({"watch": items}, status_for(items, 200))


routes = [
    Route("/crm/{version}/actions/watch", enable, methods=["POST"]),
    Route("/crm/{version}/actions/watch", details, methods=["GET"]),
    Route("/crm/{version}/actions/watch", replace, methods=["PUT"]),
    Route("/crm/{version}/actions/watch", merge, methods=["PATCH"]),
    Route("/crm/{version}/actions/watch", disable, methods=["DELETE"]),
]
