"""Users, org, module and field metadata: what SDKs and Airbyte read at start-up."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmwatch.api.auth import Caller
from crmwatch.api.http import json_response
from crmwatch.api.state import state, version
from crmwatch.domain import clock
from crmwatch.domain.errors import InvalidModule, InvalidUrlPattern, RequiredParamMissing
from crmwatch.domain.modules import Field, Module, field_json, module_json
from crmwatch.store.tenants import User


async def _caller(request: Request) -> Caller:
    version(request)
    return await state(request).gate.caller(request)


def _fields_json(request: Request, caller: Caller, fields: Iterable[Field],
                 listing: bool = True) -> list[dict[str, Any]]:
    """Field metadata in the shapes of the request's API version.

    On v2 a field list leaves out the `id` (Record Id, bigint) field: the v2 SDK types a
    module's values by this list and maps bigint to str, so listing `id` would make it refuse
    the int that `Record.set_id` takes (in lookups and updates) and parse lookup ids as str.
    """
    legacy = version(request).number < 2.1
    return [field_json(f, caller.tenant.modules, legacy_v2=legacy) for f in fields
            if not (legacy and listing and f.api_name == "id")]


def _user_json(u: User, tz: str) -> dict[str, object]:
    first, _, last = u.full_name.rpartition(" ")
    return {"id": str(u.id), "email": u.email, "full_name": u.full_name,
            "first_name": first or None, "last_name": last, "status": "active",
            "confirm": True, "zuid": str(u.id)[-9:], "time_zone": tz, "locale": "en_US",
            "role": {"name": "CEO", "id": str(u.id + 1)},
            "profile": {"name": "Administrator", "id": str(u.id + 2)}}


async def users(request: Request) -> Response:
    caller = await _caller(request)
    caller.require("users", None, "READ")
    kind = request.query_params.get("type", "AllUsers")
    pool = list(caller.tenant.users.values())
    if kind == "CurrentUser":
        pool = [caller.user]
    tz = caller.tenant.org.timezone
    data = [_user_json(u, tz) for u in pool]
    return json_response({"users": data, "info": {"per_page": 200, "count": len(data),
                                                  "page": 1, "more_records": False}})


async def user(request: Request) -> Response:
    caller = await _caller(request)
    caller.require("users", None, "READ")
    uid = request.path_params["user_id"]
    u = caller.tenant.users.get(int(uid)) if clock.is_record_id(uid) else None
    if u is None:
        raise InvalidUrlPattern()
    return json_response({"users": [_user_json(u, caller.tenant.org.timezone)]})


async def org(request: Request) -> Response:
    caller = await _caller(request)
    caller.require("org", None, "READ")
    o = caller.tenant.org
    admin = next(iter(caller.tenant.users.values()))
    return json_response({"org": [{
        "id": str(o.id), "zgid": o.zgid, "company_name": o.name, "alias": None,
        "primary_email": admin.email, "primary_zuid": str(admin.id)[-9:],
        "time_zone": o.timezone, "iso_code": "USD", "currency": "US Dollar - USD",
        "currency_symbol": "$", "currency_locale": "en_US", "country_code": "US",
        "domain_name": "org" + o.zgid, "type": "production", "mc_status": False,
        "gapps_enabled": False, "privacy_settings": False,
        "license_details": {"paid": True, "paid_type": "Enterprise", "trial_type": None,
                            "paid_expiry": None, "users_license_purchased": 100,
                            "trial_expiry": None, "trial_action": None},
    }]})


def _module_or_error(caller: Caller, name: str) -> Module:
    m = caller.tenant.modules.get(name)
    if m is None:
        raise InvalidModule(resource_path_index=0)
    return m


async def modules(request: Request) -> Response:
    caller = await _caller(request)
    caller.require("settings", "modules", "READ")
    tz = clock.zone(caller.tenant.org.timezone)
    stamp = clock.format_ms(caller.tenant.stamp, tz) if caller.tenant.stamp else None
    return json_response({"modules": [module_json(m, stamp)
                                      for m in caller.tenant.modules.values()]})


async def module(request: Request) -> Response:
    caller = await _caller(request)
    caller.require("settings", "modules", "READ")
    m = _module_or_error(caller, request.path_params["module"])
    tz = clock.zone(caller.tenant.org.timezone)
    entry = module_json(m, clock.format_ms(caller.tenant.stamp, tz))
    entry["fields"] = _fields_json(request, caller, m.fields)
    return json_response({"modules": [entry]})


async def fields(request: Request) -> Response:
    caller = await _caller(request)
    caller.require("settings", "fields", "READ")
    name = request.query_params.get("module")
    if not name:
        raise RequiredParamMissing(param_name="module")
    m = _module_or_error(caller, name)
    return json_response({"fields": _fields_json(request, caller, m.fields)})


async def field(request: Request) -> Response:
    caller = await _caller(request)
    caller.require("settings", "fields", "READ")
    name = request.query_params.get("module")
    if not name:
        raise RequiredParamMissing(param_name="module")
    m = _module_or_error(caller, name)
    fid = request.path_params["field_id"]
    for f in m.fields:
        if str(f.id) == fid or f.api_name == fid:
            return json_response({"fields": _fields_json(request, caller, [f], listing=False)})
    raise InvalidUrlPattern()


routes = [
    Route("/crm/{version}/users", users, methods=["GET"]),
    Route("/crm/{version}/users/{user_id}", user, methods=["GET"]),
    Route("/crm/{version}/org", org, methods=["GET"]),
    Route("/crm/{version}/settings/modules", modules, methods=["GET"]),
    Route("/crm/{version}/settings/modules/{module}", module, methods=["GET"]),
    Route("/crm/{version}/settings/fields", fields, methods=["GET"]),
    Route("/crm/{version}/settings/fields/{field_id}", field, methods=["GET"]),
]
