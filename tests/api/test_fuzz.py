"""Fuzz the whole API from its own OpenAPI document, against a live server on each backend.

The document is loaded from the server (`/crmwatch/v1/openapi.json`), checked against the
OpenAPI 3.1 meta-schema, then every operation is fuzzed by schemathesis with positive
(schema-valid) and negative (schema-violating) requests. What must hold for every response:

* never a 5xx (`not_a_server_error`);
* the status code is documented for the operation, the body matches the documented schema
  and the media type is the documented one (`status_code_conformance`,
  `response_schema_conformance`, `content_type_conformance`);
* every non-204 response is `application/json;charset=utf-8`, every 204 is empty.

Random module names and record ids only ever reach the "unknown module" branch, so before
fuzzing the test seeds records, notification channels, deliveries (delivered and dead) and a
completed Bulk Read job, and sharpens a copy of the document with the live server's own
metadata: module names, record, user, field, channel, delivery and job ids become enums of
live values (plus a few unknown ones), and a few modules get concrete operations
(`/crm/{version}/Leads`, ...) whose bodies are typed from their field metadata and whose
search criteria follow Zoho's grammar. Only request schemas are sharpened; responses are
checked against the schemas of the served document, and negative generation still sends
values outside the enums.

The server delivers webhooks and Bulk Read callbacks while it is fuzzed, so every URL it is
given (`notify_url`, `callback.url`) is one of two local receivers (one answers 200, one
500), and the server refuses every address but loopback (`denied_networks`): nothing it is
fuzzed with makes it reach beyond this machine. After fuzzing, a fresh channel must still be
notified of a fresh change: the dispatcher survived whatever channels the fuzz left.

A failure names the operation, the check and a curl command that reproduces it; the server's
traceback is in the captured log. The summary printed (`-s`) gives, per operation, the
status codes seen: what the run reached.

Knobs: `CRMWATCH_FUZZ_EXAMPLES` (examples per operation; default 30 on SQLite, 12 on
PostgreSQL), `CRMWATCH_FUZZ_SEED` (an integer, or `random`; default: derandomized, so a
run is repeatable) and `CRMWATCH_FUZZ_ONLY` (a regular expression: fuzz only the operations
whose label, e.g. `PATCH /crm/{version}/actions/watch`, it matches).
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup, IncorrectUsage
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from crmwatch.api import openapi
from tests.conftest import Live, start_server
from tests.receiver import Receiver

JSON_TYPE = "application/json;charset=utf-8"
DOC_PATH = "/crmwatch/v1/openapi.json"
FOCUS = ("Leads", "Events", "Products", "Quotes", "Campaigns")
"""Modules that get concrete, typed operations: together they cover every data type."""
UNKNOWN_IDS = ("1", "9223372036854775807")
"""Well-formed ids of no record (the second is the largest signed 64-bit integer)."""
# The generator drops enum values that another branch of the same `anyOf` could produce, so
# the plain branches below leave out what the NASTY_* lists hold (NUL, years 0001 and 9999).
YEAR = "(1[0-9]|20)[0-9]{2}"
DECIMAL = r"^-?[0-9]{1,18}(\.[0-9]{1,9})?$"
NASTY_NUMBERS = ["1e5000", "-1E40000", "1e-5000", "NaN", "-Infinity", "1" * 5000, "0x10",
                 "1_000", " 7 ", "１２", 1e308, -(2**63), 2**63, 0.1]
"""Values that break naive number handling (exponents, digit limits, specials, Unicode digits)."""
NASTY_TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0000-01-01",
               "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:00:60Z",
               "2026-01-01T00:00:00.1234567Z", "2026-01-01T00:00:00+24:00", "2026-01-01", "Z"]
"""Edges of the date and time range, impossible dates, over-precise fractions, bad offsets."""
NASTY_TEXT = ["a\x00b", "\x00", "é" * 300, "'; DROP TABLE records; --", "%s%n", "\u202e"]
"""NUL (PostgreSQL rejects it in text), over-long, SQL and format strings, a bidi override."""
WATCHED = ("Leads", "Contacts", "Deals", "Quoted_Items")
"""Modules the fuzzed channels watch (the last one a subform module)."""
CHANNEL_IDS = ("1000", "1001", "1002", "9223372036854775807")
"""The seeded channels (1000 and 1001 exist before fuzzing), and two that do not."""
ONLY_LOOPBACK = ",".join([*(str(n) for n in ipaddress.ip_network("0.0.0.0/0").address_exclude(
    ipaddress.ip_network("127.0.0.0/8"))), "::/0"])
"""`denied_networks` for every address but IPv4 loopback (where the receivers listen)."""
OPERATORS = ("equals", "not_equal", "starts_with", "ends_with", "contains", "not_contains",
             "in", "not_in", "greater_than", "greater_equal", "less_than", "less_equal",
             "between", "not_between")


def json_media_type(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every JSON answer says `application/json;charset=utf-8`; a 204 has no body."""
    if response.status_code == 204:
        assert not response.content, f"204 with a body: {response.content[:200]!r}"
        return None
    found = (response.headers.get("content-type") or [None])[0]
    if response.status_code == 200 and case.operation.path.endswith("/read/{job_id}/result"):
        assert found == "application/zip", f"Content-Type {found!r} for a download"
        disposition = (response.headers.get("content-disposition") or [""])[0]
        assert disposition.startswith("attachment; filename="), disposition
        return None
    assert found == JSON_TYPE, f"Content-Type {found!r}, expected {JSON_TYPE!r}"
    return None


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, json_media_type]


def _examples(live: Live) -> int:
    raw = os.environ.get("CRMWATCH_FUZZ_EXAMPLES")
    if raw:
        return int(raw)
    return 30 if live.database_url.startswith("sqlite") else 12


def _seeded(test: Any) -> Any:
    raw = os.environ.get("CRMWATCH_FUZZ_SEED", "")
    if raw.isdigit():
        return seed(int(raw))(test)
    return test


# -- the server -------------------------------------------------------------------------------

@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    """A receiver that takes every webhook, and one that refuses them all (500)."""
    ok, failing = Receiver().start(), Receiver(status=500).start()
    try:
        yield ok, failing
    finally:
        ok.stop()
        failing.stop()


@pytest.fixture
def live(database_url: str) -> Iterator[Live]:
    """The server, delivering to loopback only; failing deliveries die within a second."""
    server = start_server(database_url, denied_networks=ONLY_LOOPBACK,
                          retry_initial_seconds=0.2, retry_max_delay_seconds=0.5,
                          retry_window_seconds=1.0)
    try:
        yield server
    finally:
        server.stop()


# -- seeding ----------------------------------------------------------------------------------

def _create(api: httpx.Client, module: str, records: list[dict[str, Any]]) -> list[str]:
    r = api.post(f"/crm/v8/{module}", json={"data": records})
    assert r.status_code == 201, r.text
    return [item["details"]["id"] for item in r.json()["data"]]


def seed_records(api: httpx.Client) -> dict[str, list[str]]:
    """A few linked records in the focus modules, and one deleted Lead."""
    ids: dict[str, list[str]] = {}
    ids["Accounts"] = _create(api, "Accounts", [{"Account_Name": f"Acme {i}"} for i in range(3)])
    ids["Contacts"] = _create(api, "Contacts", [
        {"Last_Name": f"Ng {i}", "Email": f"ng{i}@example.com",
         "Account_Name": {"id": ids["Accounts"][i]}} for i in range(3)])
    ids["Leads"] = _create(api, "Leads", [
        {"Last_Name": f"Burns {i}", "Email": f"burns{i}@example.com", "Company": "Initech",
         "Annual_Revenue": 1000.5 * i, "No_of_Employees": i} for i in range(4)])
    ids["Vendors"] = _create(api, "Vendors", [{"Vendor_Name": "Globex"}])
    ids["Products"] = _create(api, "Products", [
        {"Product_Name": f"Widget {i}", "Unit_Price": 9.99, "Vendor_Name": {"id":
                                                                           ids["Vendors"][0]}}
        for i in range(2)])
    ids["Campaigns"] = _create(api, "Campaigns", [{"Campaign_Name": "Spring",
                                                   "Num_sent": "123456789012"}])
    ids["Events"] = _create(api, "Events", [
        {"Event_Title": "Kick-off", "Start_DateTime": "2026-01-05T10:00:00+01:00",
         "End_DateTime": "2026-01-05T11:00:00+01:00", "Who_Id": {"id": ids["Contacts"][0]}}])
    ids["Quotes"] = _create(api, "Quotes", [
        {"Subject": "Q1", "Account_Name": {"id": ids["Accounts"][0]},
         "Quoted_Items": [{"Product_Name": {"id": ids["Products"][0]}, "Quantity": 2}]}])
    r = api.delete("/crm/v8/Leads", params={"ids": ids["Leads"][-1]})
    assert r.status_code == 200, r.text
    return ids


def seed_channels(api: httpx.Client, ok: Receiver, failing: Receiver) -> None:
    """Channel 1000 on the receiver that takes webhooks, 1001 on the one that refuses them."""
    r = api.post("/crm/v8/actions/watch", json={"watch": [
        {"channel_id": CHANNEL_IDS[0], "notify_url": ok.url + "/hook?key=1",
         "events": ["Leads.all", "Contacts.create"], "token": "fuzz",
         "return_affected_field_values": True},
        {"channel_id": CHANNEL_IDS[1], "notify_url": failing.url + "/hook",
         "events": ["Leads.create"]}]})
    assert r.status_code == 200, r.text


def wait_deliveries(api: httpx.Client, timeout: float = 30) -> list[str]:
    """The ids of the delivery log once it holds a delivered and a dead delivery."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.get("/crmwatch/v1/deliveries")
        log = r.json()["deliveries"] if r.status_code == 200 else []
        if {"delivered", "dead"} <= {d["status"] for d in log}:
            return [d["id"] for d in log]
        assert time.monotonic() < deadline, log
        time.sleep(0.1)


def seed_bulk_job(api: httpx.Client, ok: Receiver, timeout: float = 60) -> str:
    """A completed Bulk Read export of Leads (its callback goes to `ok`)."""
    r = api.post("/crm/bulk/v8/read", json={"query": {"module": {"api_name": "Leads"}},
                                            "callback": {"url": ok.url + "/bulk"}})
    assert r.status_code == 201, r.text
    job_id: str = r.json()["data"][0]["details"]["id"]
    deadline = time.monotonic() + timeout
    while api.get(f"/crm/bulk/v8/read/{job_id}").json()["data"][0]["state"] != "COMPLETED":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return job_id


def still_delivers(api: httpx.Client, ok: Receiver) -> None:
    """A fresh channel is notified of a fresh change (the dispatcher survived the fuzz)."""
    r = api.post("/crm/v8/actions/watch", json={"watch": [
        {"channel_id": "4242", "notify_url": ok.url + "/after", "events": ["Accounts.create"]}]})
    assert r.status_code == 200, r.text
    (account,) = _create(api, "Accounts", [{"Account_Name": "After the fuzz"}])
    deadline = time.monotonic() + 30
    while not any(x.path == "/after" and account in x.json["ids"] for x in list(ok.received)):
        assert time.monotonic() < deadline, "no notification after the fuzz"
        time.sleep(0.05)


# -- sharpening the document with live metadata -------------------------------------------------

def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` without its null alternative, non-empty: for a mandatory field."""
    inner = dict(schema["anyOf"][0])
    if inner.get("type") == "string":
        inner["minLength"] = 1
    return inner


def _value_schema(f: dict[str, Any], fields_of: dict[str, list[dict[str, Any]]],
                  ids: dict[str, list[str]], user_ids: list[str]) -> dict[str, Any] | None:
    t = f["data_type"]
    if t in ("text", "textarea", "phone", "website", "autonumber"):
        return _nullable({"anyOf": [
            {"type": "string", "maxLength": f["length"] + 1, "pattern": "^[^\x00]*$"},
            {"enum": NASTY_TEXT}]})
    if t == "email":
        return _nullable({"anyOf": [{"type": "string", "format": "email"},
                                    {"enum": NASTY_TEXT}]})
    if t in ("integer", "bigint"):
        return _nullable({"anyOf": [{"type": "integer"},
                                    {"type": "string", "pattern": "^-?[0-9]{1,20}$"},
                                    {"enum": NASTY_NUMBERS}]})
    if t in ("double", "currency", "percent"):
        return _nullable({"anyOf": [{"type": "number"},
                                    {"type": "string", "pattern": DECIMAL},
                                    {"enum": NASTY_NUMBERS}]})
    if t == "boolean":
        return _nullable({"type": "boolean"})
    if t == "date":
        return _nullable({"anyOf": [{"type": "string", "pattern": f"^{YEAR}-[01][0-9]-[0-3][0-9]$"},
                                    {"enum": NASTY_TIMES}]})
    if t == "datetime":
        return _nullable({"anyOf": [
            {"type": "string",
             "pattern": rf"^{YEAR}-[01][0-9]-[0-3][0-9][T ][0-2][0-9]:[0-5][0-9](:[0-6][0-9]"
                        r"(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:?[0-9]{2})$"},
            {"enum": NASTY_TIMES}]})
    values = [v["actual_value"] for v in f.get("pick_list_values") or []]
    if t == "picklist":
        return _nullable({"enum": [*values, "Not a choice"]})
    if t == "multiselectpicklist":
        return _nullable({"type": "array", "items": {"enum": values}})
    if t in ("lookup", "ownerlookup", "userlookup"):
        target = (f.get("lookup") or {}).get("module", {}).get("api_name")
        ref = {"enum": [*(user_ids if t != "lookup" else ids.get(target or "", [])),
                        *UNKNOWN_IDS]}
        return _nullable({"anyOf": [{"type": "object", "required": ["id"],
                                     "properties": {"id": ref, "name": {"type": "string"}},
                                     "additionalProperties": False},
                                    ref]})
    if t == "subform":
        sub = (f.get("associated_module") or {}).get("module")
        if sub not in fields_of:
            return None
        return _nullable({"type": "array", "maxItems": 3,
                          "items": _record_schema(sub, fields_of, ids, user_ids)})
    return None


def _record_schema(module: str, fields_of: dict[str, list[dict[str, Any]]],
                   ids: dict[str, list[str]], user_ids: list[str]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for f in fields_of[module]:
        if f["read_only"] and f["api_name"] != "Owner":
            continue
        schema = _value_schema(f, fields_of, ids, user_ids)
        if schema is not None:
            props[f["api_name"]] = _plain(schema) if f["system_mandatory"] else schema
    props["id"] = {"enum": [*ids.get(module, []), *UNKNOWN_IDS]}
    mandatory = [f["api_name"] for f in fields_of[module] if f["system_mandatory"]
                 and f["api_name"] in props]
    return {"type": "object", "properties": props, "additionalProperties": False,
            "required": mandatory}


def _criteria_pattern(fields: list[dict[str, Any]]) -> str:
    names = "|".join(f["api_name"] for f in fields if f["data_type"] != "subform")
    ops = "|".join(OPERATORS)
    cond = rf"\(({names}):({ops}):([^()\\]|\\.){{0,12}}\)"
    return rf"^\(?{cond}((and|or){cond})?\)?$"


def sharpen(doc: dict[str, Any], fields_of: dict[str, list[dict[str, Any]]],
            ids: dict[str, list[str]], user_ids: list[str]) -> dict[str, Any]:
    """A copy of `doc` that steers generation toward the live server's data."""
    doc = copy.deepcopy(doc)
    # Sharpened schemas replace, rather than widen, the served ones: the generator folds
    # `anyOf: [{enum: [...]}, {type: string}]` into its wider branch and never picks the enum.
    params = doc["components"]["parameters"]
    paths = doc["paths"]
    names = sorted(fields_of)
    params["ModulePath"]["schema"] = {"enum": [*names, "leads", "No_Such_Module"]}
    params["ModuleQuery"]["schema"] = {"enum": [*names, "No_Such_Module"]}
    record_ids = sorted({i for v in ids.values() for i in v})
    record_id = {"enum": [*record_ids, *UNKNOWN_IDS]}
    _path_param(paths["/crm/{version}/{module}/{record_id}"], "record_id")["schema"] = record_id
    _path_param(paths["/crm/{version}/users/{user_id}"], "user_id")["schema"] = {
        "enum": [*user_ids, *UNKNOWN_IDS]}
    lead_fields = fields_of["Leads"]
    field_names = "|".join(f["api_name"] for f in lead_fields)
    params["Fields"]["schema"] = {"type": "string",
                                  "pattern": f"^({field_names})(,({field_names})){{0,3}}$"}
    _path_param(paths["/crm/{version}/settings/fields/{field_id}"], "field_id")["schema"] = {
        "enum": [*(f["api_name"] for f in lead_fields), *(f["id"] for f in lead_fields[:5]),
                 "No_Such_Field"]}
    for p in paths["/crmwatch/v1/digest"]["get"]["parameters"]:
        if p.get("name") in ("from_id", "to_id"):
            p["schema"] = record_id
        elif p.get("name") == "fields":
            p["schema"] = params["Fields"]["schema"]
    ids_param = next(p for p in paths["/crm/{version}/{module}"]["delete"]["parameters"]
                     if p["name"] == "ids")
    ids_param["schema"] = {"type": "string", "pattern": "^(" + "|".join(
        [*record_ids, *UNKNOWN_IDS]) + ")(,(" + "|".join(record_ids) + ")){0,3}$"}

    for module in FOCUS:
        record = _record_schema(module, fields_of, ids, user_ids)
        content = _body(record)
        with_id = _body({**record, "required": ["id"]})
        for suffix in ("", "/upsert", "/search", "/{record_id}"):
            item = copy.deepcopy(paths["/crm/{version}/{module}" + suffix])
            item["parameters"] = [p for p in item["parameters"]
                                  if p.get("$ref") != "#/components/parameters/ModulePath"]
            for method, op in item.items():
                if method == "parameters":
                    continue
                op["operationId"] += module
                if "requestBody" in op:
                    many = suffix == "" and method == "put"
                    op["requestBody"] = {"required": True, "content": with_id if many
                                         else content}
            if suffix == "/{record_id}":
                _path_param(item, "record_id")["schema"] = {
                    "enum": [*ids.get(module, []), *UNKNOWN_IDS]}
            if suffix == "/search":
                crit = next(p for p in item["get"]["parameters"] if p.get("name") == "criteria")
                crit["schema"] = {"type": "string",
                                  "pattern": _criteria_pattern(fields_of[module])}
            if suffix in ("", "/{record_id}"):  # the generic operations delete enough
                item.pop("delete")
            paths[f"/crm/{{version}}/{module}{suffix}"] = item
    return doc


def sharpen_notifications(doc: dict[str, Any], fields_of: dict[str, list[dict[str, Any]]],
                          urls: list[str], delivery_ids: list[str], job_ids: list[str]
                          ) -> dict[str, Any]:
    """Steer the Notification, delivery log and Bulk Read operations toward live values.

    `urls` are the receivers' (every URL the server is given is one of them, so it never
    reaches beyond loopback); channel ids are the seeded ones, events and conditions name
    watched modules and Leads fields.
    """
    doc = copy.deepcopy(doc)
    schemas, params, paths = (doc["components"]["schemas"], doc["components"]["parameters"],
                              doc["paths"])
    schemas["NotifyUrl"] = {"enum": urls}
    schemas["CallbackUrl"] = {"enum": [*urls, "ftp://127.0.0.1/x"]}
    schemas["ChannelId"] = {"enum": [*CHANNEL_IDS, int(CHANNEL_IDS[0])]}
    # Half the events, and half the versions, are those a Leads condition needs (v6+).
    schemas["WatchEvent"] = {"anyOf": [
        {"enum": [f"Leads.{op}" for op in ("create", "edit", "delete", "all")]},
        {"enum": [*(f"{m}.{op}" for m in WATCHED[1:] for op in ("create", "edit", "all")),
                  "leads.UPDATE", "Leads.bogus", "No_Such_Module.all"]}]}
    lead_fields = [f["api_name"] for f in fields_of["Leads"]]
    # Conditions name Leads (mostly) and its fields, so some of them hold.
    for ref, names in (("ModuleRef", ["Leads", "leads", "Contacts", "No_Such_Module"]),
                       ("FieldRef", [*lead_fields[1:9], "No_Such_Field"])):
        schemas[ref] = {"type": "object", "required": ["api_name"],
                        "additionalProperties": False,
                        "properties": {"api_name": {"enum": names}}}
    for name in ("WatchChannelInput", "WatchMergeInput"):  # NUL anywhere fails the request
        props = schemas[name]["properties"]
        props["token"] = {"anyOf": [
            {"type": "string", "maxLength": 51, "pattern": "^[^\x00]*$"}, {"type": "null"},
            {"enum": [t for t in NASTY_TEXT if "\x00" not in t]}]}
        props["fields"] = {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 2,
                                                        "items": {"enum": lead_fields[:3]}}]}
        for key in ("resource_uri", "resource_id", "resource_name"):
            props[key] = {"enum": [None, "Leads"]}
    channel_ids = "|".join(CHANNEL_IDS)
    watch = paths["/crm/{version}/actions/watch"]
    watch["parameters"] = [{**params["Version"], "schema": {"anyOf": [
        {"enum": ["v6", "v7", "v8"]}, {"enum": ["v2", "v2.1", "v3", "v4", "v5"]}]}}]
    _path_param(watch["get"], "channel_id")["schema"] = {"enum": list(CHANNEL_IDS)}
    _path_param(watch["get"], "module")["schema"] = {"enum": [*WATCHED, "No_Such_Module"]}
    _path_param(watch["delete"], "channel_ids")["schema"] = {
        "type": "string", "pattern": f"^({channel_ids})(,({channel_ids})){{0,2}}$"}
    log = paths["/crmwatch/v1/deliveries"]["get"]
    _path_param(log, "channel_id")["schema"] = {"enum": list(CHANNEL_IDS)}
    # "²" and "１２" pass str.isdigit(); int() refuses the first (a 500 once)
    whole = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 3},
                       {"enum": ["²", "１２", "0", "-1", "1e3", "201"]}]}
    for op in (watch["get"], log):
        for name in ("page", "per_page"):
            found = [p for p in op["parameters"] if p.get("name") == name]
            if found:
                found[0]["schema"] = whole
            else:  # shared by reference: a copy for this operation alone
                op["parameters"] = [p for p in op["parameters"]
                                    if p.get("$ref") != "#/components/parameters/PerPage"]
                op["parameters"].append({**params["PerPage"], "schema": whole})
    params["DeliveryId"]["schema"] = {"enum": [*delivery_ids, "1", "999999999999999999"]}
    params["JobId"]["schema"] = {"enum": [*job_ids, *UNKNOWN_IDS]}
    # a page_token needs a previous page of 200 000 records: generate queries only
    schemas["BulkQuery"].pop("anyOf")
    schemas["BulkQuery"]["required"] = ["module"]
    query = schemas["BulkQuery"]["properties"]
    query.pop("page_token")
    names = sorted(fields_of)
    query["module"] = {"anyOf": [{"enum": [*names, "No_Such_Module"]}, {
        "type": "object", "required": ["api_name"], "additionalProperties": False,
        "properties": {"api_name": {"enum": [*names, "No_Such_Module"]}}}]}
    query["fields"] = {"type": "array", "maxItems": 5,
                       "items": {"enum": [*lead_fields, "No_Such_Field", "Owner.email"]}}
    leaf = schemas["BulkCriteria"]["oneOf"][0]
    leaf["properties"]["field"] = {"type": "object", "required": ["api_name"],
                                   "additionalProperties": False,
                                   "properties": {"api_name": {"enum": lead_fields}}}
    leaf["properties"]["api_name"] = {"enum": [*lead_fields, "No_Such_Field"]}
    leaf["properties"]["value"] = {"anyOf": [
        {"type": "string", "maxLength": 12}, {"type": "integer"}, {"type": "boolean"},
        {"enum": ["${EMPTY}", "2026-01-05", "2026-01-05T10:00:00+01:00", *NASTY_NUMBERS[:4],
                  *NASTY_TIMES[:3]]},
        {"type": "array", "maxItems": 3, "items": {"type": ["string", "number"]}}]}
    return doc


def _body(record: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": {
        "type": "object", "required": ["data"],
        "properties": {"data": {"type": "array", "minItems": 1, "maxItems": 5, "items": record}},
    }}}


def _path_param(item: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in item["parameters"] if p.get("name") == name)


# -- fuzzing --------------------------------------------------------------------------------

def fuzz_operation(operation: Any, base_url: str, session: requests.Session,
                   headers: dict[str, str], examples: int, statuses: Counter[int]) -> None:
    """Positive and negative cases of one operation; raises the (shrunk) failure."""
    strategy = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                         operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @_seeded
    @settings(max_examples=examples, deadline=None, database=None,
              derandomize=os.environ.get("CRMWATCH_FUZZ_SEED", "") == "",
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        response = case.call(base_url, session, headers, timeout=30)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            session.close()  # the server drops the connection after a crash
        case.validate_response(response, checks=CHECKS)

    fuzz()


def _describe(exc: BaseException) -> str:
    """The failure's message; each one's, for hypothesis' group of distinct failures."""
    if isinstance(exc, BaseExceptionGroup) and not isinstance(exc, FailureGroup):
        return "\n".join(_describe(e) for e in exc.exceptions)
    return str(exc)


# -- the tests --------------------------------------------------------------------------------

def test_document_is_valid_openapi_31() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    doc = {**openapi.document(), "servers": [{"url": "http://127.0.0.1:8000"}]}
    validator.validate(doc)  # picks the 3.1 validator from `openapi: 3.1.0`


def test_document_loads_from_the_server(live: Live) -> None:
    schema = schemathesis.openapi.from_url(live.base_url + DOC_PATH)
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    assert schema.raw_schema["openapi"].startswith("3.1.")
    assert schema.raw_schema["servers"] == [{"url": live.base_url}]
    labels = {r.ok().label for r in schema.get_all_operations()}
    # 39 operations; loaded from a URL, schemathesis leaves out the one serving the document
    assert len(labels) == 38, sorted(labels)
    assert "GET /crmwatch/v1/digest" in labels
    assert "GET /crm/{version}/{module}/{record_id}" in labels
    assert "PATCH /crm/{version}/actions/watch" in labels
    assert "GET /crm/bulk/{version}/read/{job_id}/result" in labels


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_fuzz_every_operation(live: Live, receivers: tuple[Receiver, Receiver]) -> None:
    ok, failing = receivers
    seeding = time.monotonic()
    with live.http() as api:
        seed_channels(api, ok, failing)
        ids = seed_records(api)
        delivery_ids = wait_deliveries(api)
        job_ids = [seed_bulk_job(api, ok)]
        modules = api.get("/crm/v8/settings/modules").json()["modules"]
        fields_of = {m["api_name"]: api.get("/crm/v8/settings/fields",
                                            params={"module": m["api_name"]}).json()["fields"]
                     for m in modules}
        user_ids = [u["id"] for u in api.get("/crm/v8/users").json()["users"]]
    served = httpx.get(live.base_url + DOC_PATH).json()
    urls = [ok.url + "/hook?key=1", ok.url + "/other", failing.url + "/hook"]
    schema = schemathesis.openapi.from_dict(sharpen_notifications(
        sharpen(served, fields_of, ids, user_ids), fields_of, urls, delivery_ids, job_ids))
    schema.validate()

    seeding = time.monotonic() - seeding
    headers = {"Authorization": f"Zoho-oauthtoken {live.token()}"}
    examples = _examples(live)
    failures: list[str] = []
    seen: dict[str, Counter[int]] = {}
    took: dict[str, float] = {}
    started = time.monotonic()
    with requests.Session() as session:
        only = os.environ.get("CRMWATCH_FUZZ_ONLY", "")
        operations = [op for op in (result.ok() for result in schema.get_all_operations())
                      if re.search(only, op.label)]
        # deletions last, so the seeded records serve the other operations first
        for operation in sorted(operations, key=lambda op: op.method.upper() == "DELETE"):
            statuses: Counter[int] = Counter()
            seen[operation.label] = statuses
            begun = time.monotonic()
            try:
                fuzz_operation(operation, live.base_url, session, headers, examples, statuses)
            except (InvalidArgument, IncorrectUsage):
                raise
            except (Exception, FailureGroup) as exc:  # report every operation's failure
                failures.append(f"== {operation.label}\n{_describe(exc)}")
            took[operation.label] = time.monotonic() - begun
    elapsed = time.monotonic() - started
    summary = "\n".join(f"{label}: {dict(sorted(c.items()))} in {took[label]:.1f}s"
                        for label, c in sorted(seen.items()))
    print(f"seeded in {seeding:.1f}s, fuzzed {len(seen)} operations x {examples} examples in "
          f"{elapsed:.1f}s\n{summary}")
    if failures:
        pytest.fail(f"{len(failures)} operation(s) failed:\n\n" + "\n\n".join(failures))
    with live.http() as api:
        still_delivers(api, ok)
