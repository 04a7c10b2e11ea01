"""Drive the official Zoho SDK for API v8 (zohocrmsdk8-0), unmodified, in a child process.

Reads a JSON job on stdin: connection details, a work directory and a list of steps. Runs
`Initializer.initialize` against the given base URL, then each step, and prints one JSON line
describing what the SDK returned (classes, status codes, parsed values and their Python types),
the token store and the environment the SDK ended up on. Used by tests/clients/test_sdk8.py.
"""

from __future__ import annotations

import csv
import datetime
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.api.logger import Logger
from zohocrmsdk.src.com.zoho.crm.api import HeaderMap, ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.fields import FieldsOperations, GetFieldsParam
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.record import (
    BodyWrapper,
    Field,
    GetRecordsHeader,
    GetRecordsParam,
    Record,
    RecordOperations,
)
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
from zohocrmsdk.src.com.zoho.crm.api.util import Choice


def plain(value: Any) -> Any:
    """A JSON rendering of a value the SDK parsed (its Python type is reported separately)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Choice):
        return value.get_value()
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Record):
        return {"id": value.get_id(), "name": value.get_key_value("name")}
    if hasattr(value, "get_id"):  # MinifiedUser, User
        return {"id": value.get_id(), "name": getattr(value, "get_name", lambda: None)()}
    return repr(value)


def typed(values: dict[str, Any]) -> dict[str, Any]:
    return {"values": {k: plain(v) for k, v in values.items()},
            "types": {k: type(v).__name__ for k, v in values.items()}}


def item(obj: Any) -> dict[str, Any]:
    """A SuccessResponse or APIException (an action item or a top-level error)."""
    message = obj.get_message()
    return {"class": type(obj).__name__, "status": plain(obj.get_status()),
            "code": plain(obj.get_code()),
            "message": plain(message),
            "details": typed(obj.get_details() or {})}


def describe(response: Any) -> dict[str, Any]:
    if response is None:
        return {"response": None}
    obj = response.get_object()
    out: dict[str, Any] = {"status": response.get_status_code(),
                           "class": type(obj).__name__ if obj is not None else None}
    name = out["class"]
    if name == "ActionWrapper":
        out["data"] = [item(x) for x in obj.get_data()]
    elif name == "APIException":
        out["error"] = item(obj)
    elif name == "ResponseWrapper" and hasattr(obj, "get_fields"):
        out["fields"] = [{"api_name": f.get_api_name(), "data_type": f.get_data_type(),
                          "json_type": f.get_json_type(),
                          "system_mandatory": f.get_system_mandatory(),
                          "custom_field": f.get_custom_field(), "id": f.get_id()}
                         for f in obj.get_fields()]
    elif name == "ResponseWrapper":
        out["records"] = [typed(r.get_key_values()) for r in obj.get_data()]
        info = obj.get_info()
        out["info"] = None if info is None else {
            "per_page": info.get_per_page(), "count": info.get_count(),
            "page": info.get_page(), "more_records": info.get_more_records(),
            "next_page_token": info.get_next_page_token(),
            "page_token_expiry": plain(info.get_page_token_expiry()),
            "page_token_expiry_type": type(info.get_page_token_expiry()).__name__}
    return out


def value(raw: Any) -> Any:
    """Step values: JSON scalars as they are; {"choice": v}, {"lookup": id} for SDK types."""
    if isinstance(raw, dict) and "choice" in raw:
        return Choice(raw["choice"])
    if isinstance(raw, dict) and "lookup" in raw:
        target = Record()
        target.set_id(int(raw["lookup"]))
        return target
    return raw


def body(records: list[dict[str, Any]]) -> BodyWrapper:
    built = []
    for values in records:
        record = Record()
        for key, raw in values.items():
            if key == "Last_Name":
                record.add_field_value(Field.Leads.last_name(), value(raw))
            elif key == "Company":
                record.add_field_value(Field.Leads.company(), value(raw))
            else:
                record.add_key_value(key, value(raw))
        built.append(record)
    wrapper = BodyWrapper()
    wrapper.set_data(built)
    return wrapper


def run_step(step: dict[str, Any]) -> dict[str, Any]:
    op = step["op"]
    if op == "fields":
        params = ParameterMap()
        params.add(GetFieldsParam.module, step["module"])
        return describe(FieldsOperations().get_fields(params))
    records = RecordOperations(step["module"])
    if op == "create":
        return describe(records.create_records(body(step["records"])))
    if op == "update":
        return describe(records.update_record(int(step["id"]), body([step["values"]])))
    if op == "update_many":
        wrapper = body([{k: v for k, v in r.items() if k != "id"} for r in step["records"]])
        for record, raw in zip(wrapper.get_data(), step["records"], strict=True):
            record.set_id(int(raw["id"]))
        return describe(records.update_records(wrapper))
    if op == "delete":
        return describe(records.delete_record(int(step["id"]), ParameterMap()))
    if op == "get":
        return describe(records.get_record(int(step["id"])))
    if op == "list":
        return describe(records.get_records(*list_args(step, step.get("params", {}))))
    if op == "list_by_token":
        # What a client does past the first page: follow info.next_page_token.
        pages = []
        params = dict(step.get("params", {}))
        while len(pages) < 50:
            page = describe(records.get_records(*list_args(step, params)))
            pages.append(page)
            info = page.get("info") or {}
            if not info.get("more_records"):
                break
            params["page_token"] = info["next_page_token"]
        return {"pages": pages}
    raise ValueError(f"unknown step {op!r}")


def list_args(step: dict[str, Any], params: dict[str, Any]) -> tuple[ParameterMap, HeaderMap]:
    param_map = ParameterMap()
    for key, raw in params.items():
        param_map.add(getattr(GetRecordsParam, key), raw)
    headers = HeaderMap()
    if step.get("if_modified_since"):
        headers.add(GetRecordsHeader.if_modified_since,
                    datetime.datetime.fromisoformat(step["if_modified_since"]))
    return param_map, headers


def main(run: Callable[[dict[str, Any]], dict[str, Any]] = run_step) -> None:
    """Initialise, run every step with `run`, print the report (drivers for other operations
    pass their own `run`, which hands the steps it does not know to `run_step`)."""
    job = json.load(sys.stdin)
    work = Path(job["workdir"])
    base = job["base_url"]
    # The SDK logs some errors with a broken format string; keep stderr readable.
    logging.raiseExceptions = False
    environment = DataCenter.Environment(base, base + "/oauth/v2/token", base)
    token = OAuthToken(client_id=job["client_id"], client_secret=job["client_secret"],
                       refresh_token=job["refresh_token"])
    try:
        Initializer.initialize(
            environment=environment, token=token, store=FileStore(str(work / "tokens.csv")),
            sdk_config=SDKConfig(), resource_path=str(work),
            logger=Logger.get_instance(Logger.Levels.INFO, str(work / "sdk.log")))
    except Exception as exc:
        print(json.dumps({"initialize_error": f"{type(exc).__name__}: {exc}"}))
        return
    results = []
    for step in job["steps"]:
        try:
            results.append(run(step))
        except Exception as exc:
            results.append({"exception": f"{type(exc).__name__}: {exc}"})
    with open(work / "tokens.csv", newline="") as f:
        tokens = list(csv.DictReader(f))
    print(json.dumps({
        "results": results,
        "tokens": tokens,
        "environment_url": Initializer.get_initializer().environment.url,
        "accounts_url": Initializer.get_initializer().environment.accounts_url,
    }))


if __name__ == "__main__":
    main()
