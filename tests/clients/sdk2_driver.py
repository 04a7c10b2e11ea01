"""Drive the official Zoho SDK for API v2 (zohocrmsdk2-0), unmodified, in a child process.

Reads a JSON job on stdin (connection details, a work directory, steps), initialises the SDK as
in docs clients.md section 2.1, runs each step and prints one JSON line describing what the SDK
returned. Used by tests/clients/test_sdk2.py.
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

from zcrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zcrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zcrmsdk.src.com.zoho.api.logger import Logger
from zcrmsdk.src.com.zoho.crm.api import HeaderMap, ParameterMap
from zcrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zcrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zcrmsdk.src.com.zoho.crm.api.record import (
    BodyWrapper,
    GetRecordsHeader,
    GetRecordsParam,
    Record,
    RecordOperations,
)
from zcrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
from zcrmsdk.src.com.zoho.crm.api.user_signature import UserSignature
from zcrmsdk.src.com.zoho.crm.api.util import Choice

USER = "a@example.com"


def plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Choice):
        return value.get_value()
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if hasattr(value, "get_id"):
        return {"id": value.get_id()}
    return repr(value)


def typed(values: dict[str, Any]) -> dict[str, Any]:
    return {"values": {k: plain(v) for k, v in values.items()},
            "types": {k: type(v).__name__ for k, v in values.items()}}


def describe(response: Any) -> dict[str, Any]:
    if response is None:
        return {"response": None}
    obj = response.get_object()
    out: dict[str, Any] = {"status": response.get_status_code(),
                           "class": type(obj).__name__ if obj is not None else None}
    if out["class"] == "ActionWrapper":
        out["data"] = [{"class": type(x).__name__, "status": plain(x.get_status()),
                        "code": plain(x.get_code()), "message": plain(x.get_message()),
                        "details": typed(x.get_details() or {})} for x in obj.get_data()]
    elif out["class"] == "APIException":
        out["error"] = {"code": plain(obj.get_code()), "message": plain(obj.get_message()),
                        "details": plain(obj.get_details())}
    elif out["class"] == "ResponseWrapper":
        out["records"] = [typed(r.get_key_values()) for r in obj.get_data()]
        info = obj.get_info()
        out["info"] = None if info is None else {
            "per_page": info.get_per_page(), "count": info.get_count(),
            "page": info.get_page(), "more_records": info.get_more_records()}
    return out


def value(raw: Any) -> Any:
    """Step values: JSON scalars as they are; {"lookup": id} for a lookup (a Record)."""
    if isinstance(raw, dict) and "lookup" in raw:
        target = Record()
        target.set_id(int(raw["lookup"]))
        return target
    return raw


def run_step(step: dict[str, Any]) -> dict[str, Any]:
    op, module = step["op"], step["module"]
    if op == "list":
        params = ParameterMap()
        for key, raw in step.get("params", {}).items():
            params.add(getattr(GetRecordsParam, key), raw)
        headers = HeaderMap()
        if step.get("if_modified_since"):
            headers.add(GetRecordsHeader.if_modified_since,
                        datetime.datetime.fromisoformat(step["if_modified_since"]))
        return describe(RecordOperations().get_records(module, params, headers))
    if op == "get":
        return describe(RecordOperations().get_record(int(step["id"]), module))
    if op == "create":
        records = []
        for values in step["records"]:
            record = Record()
            for key, raw in values.items():
                record.add_key_value(key, value(raw))
            records.append(record)
        wrapper = BodyWrapper()
        wrapper.set_data(records)
        return describe(RecordOperations().create_records(module, wrapper))
    raise ValueError(f"unknown step {op!r}")


def main(run: Callable[[dict[str, Any]], dict[str, Any]] = run_step) -> None:
    """Initialise, run every step with `run`, print the report (drivers for other operations
    pass their own `run`, which hands the steps it does not know to `run_step`)."""
    job = json.load(sys.stdin)
    work = Path(job["workdir"])
    base = job["base_url"]
    # The SDK logs some errors with a broken format string; keep stderr readable.
    logging.raiseExceptions = False
    environment = DataCenter.Environment(base, base + "/oauth/v2/token", base, "us_prd")
    Initializer.initialize(
        user=UserSignature(USER), environment=environment,
        token=OAuthToken(client_id=job["client_id"], client_secret=job["client_secret"],
                         refresh_token=job["refresh_token"]),
        store=FileStore(str(work / "tokens.csv")),
        sdk_config=SDKConfig(auto_refresh_fields=False, pick_list_validation=False),
        resource_path=str(work),
        logger=Logger.get_instance(Logger.Levels.INFO, str(work / "sdk.log")))
    results = []
    for step in job["steps"]:
        try:
            results.append(run(step))
        except Exception as exc:
            results.append({"exception": f"{type(exc).__name__}: {exc}"})
    with open(work / "tokens.csv", newline="") as f:
        tokens = list(csv.DictReader(f))
    print(json.dumps({"results": results, "tokens": tokens,
                      "environment_url": Initializer.get_initializer().environment.url}))


if __name__ == "__main__":
    main()
