"""Drive the v8 SDK's `BulkReadOperations` (zohocrmsdk8-0), unmodified, in a child process.

The job and the report are those of sdk8_driver.py, whose record steps also work here. One
bulk step does what a client of the SDK does, end to end:

    {"op": "bulk_read", "module": "Leads", "fields": ["Last_Name"], "criteria": {...}}

`create_bulk_read_job` with a Query built from the SDK's own classes (the criteria JSON is
turned into nested `Criteria` objects: `field` as a MinifiedField, `comparator` and
`group_operator` as Choice), then `get_bulk_read_job_details` every 0.1 s until the state is
COMPLETED or FAILURE, then `download_result`, whose stream is saved under the file name the
SDK took from Content-Disposition and unzipped. The step reports what the SDK parsed at each
stage, with Python types, and the CSV rows. Used by tests/clients/test_sdk8_bulk.py.
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from pathlib import Path
from typing import Any

from sdk8_driver import item, main, plain, run_step, typed
from zohocrmsdk.src.com.zoho.crm.api.bulk_read import (
    ActionWrapper,
    APIException,
    BodyWrapper,
    BulkReadOperations,
    Criteria,
    FileBodyWrapper,
    Query,
    ResponseWrapper,
)
from zohocrmsdk.src.com.zoho.crm.api.fields import MinifiedField
from zohocrmsdk.src.com.zoho.crm.api.modules import MinifiedModule
from zohocrmsdk.src.com.zoho.crm.api.util import Choice

POLL_SECONDS = 0.1
POLL_LIMIT = 600


def criteria(raw: dict[str, Any]) -> Criteria:
    """A criteria tree as SDK objects, from its JSON form."""
    node = Criteria()
    if "group" in raw:
        node.set_group_operator(Choice(raw["group_operator"]))
        node.set_group([criteria(child) for child in raw["group"]])
        return node
    field = MinifiedField()
    field.set_api_name(raw["field"]["api_name"])
    node.set_field(field)
    node.set_comparator(Choice(raw["comparator"]))
    node.set_value(raw["value"])
    return node


def criteria_json(node: Criteria | None) -> Any:
    """What the SDK parsed back into a Criteria, as JSON."""
    if node is None:
        return None
    if node.get_group() is not None:
        return {"group_operator": plain(node.get_group_operator()),
                "group": [criteria_json(child) for child in node.get_group()]}
    field = node.get_field()
    return {"field": None if field is None else {"api_name": field.get_api_name(),
                                                  "id": field.get_id()},
            "comparator": plain(node.get_comparator()), "value": plain(node.get_value())}


def job(detail: Any) -> dict[str, Any]:
    """A JobDetail: its members with Python types, the query and the result."""
    out = typed({"id": detail.get_id(), "operation": detail.get_operation(),
                 "state": detail.get_state(), "created_by": detail.get_created_by(),
                 "created_time": detail.get_created_time(),
                 "file_type": detail.get_file_type()})
    query = detail.get_query()
    if query is not None:
        module = query.get_module()
        out["query"] = {"module": None if module is None else
                        {"api_name": module.get_api_name(), "id": module.get_id()},
                        "fields": query.get_fields(), "page": query.get_page(),
                        "criteria": criteria_json(query.get_criteria())}
    result = detail.get_result()
    if result is not None:
        out["result"] = typed({"page": result.get_page(), "per_page": result.get_per_page(),
                               "count": result.get_count(),
                               "download_url": result.get_download_url(),
                               "more_records": result.get_more_records(),
                               "next_page_token": result.get_next_page_token()})
    return out


def describe(response: Any) -> dict[str, Any]:
    if response is None:
        return {"response": None}
    obj = response.get_object()
    out: dict[str, Any] = {"status": response.get_status_code(),
                           "class": type(obj).__name__ if obj is not None else None}
    if isinstance(obj, ActionWrapper):
        out["data"] = [item(x) for x in obj.get_data()]
    elif isinstance(obj, APIException):
        out["error"] = item(obj)
    elif isinstance(obj, ResponseWrapper):
        out["data"] = [job(d) for d in obj.get_data()]
    return out


def download(response: Any, workdir: Path) -> dict[str, Any]:
    """Save the downloaded stream as the SDK names it, then read the zip's members."""
    out = describe(response)
    obj = response.get_object() if response is not None else None
    if not isinstance(obj, FileBodyWrapper):
        return out
    stream = obj.get_file()
    name = stream.get_name()
    out["file_name"] = name
    path = workdir / "downloads" / name
    path.parent.mkdir(exist_ok=True)
    with open(path, "wb") as f:
        for chunk in stream.get_stream():
            f.write(chunk)
    with zipfile.ZipFile(path) as zf:
        out["members"] = zf.namelist()
        out["csv"] = {member: list(csv.reader(io.StringIO(zf.read(member).decode("utf-8"))))
                      for member in out["members"]}
    return out


def bulk_read(step: dict[str, Any], workdir: Path) -> dict[str, Any]:
    operations = BulkReadOperations()
    query = Query()
    module = MinifiedModule()
    module.set_api_name(step["module"])
    query.set_module(module)
    if step.get("fields") is not None:
        query.set_fields(step["fields"])
    if step.get("criteria") is not None:
        query.set_criteria(criteria(step["criteria"]))
    request = BodyWrapper()
    request.set_query(query)
    request.set_file_type("csv")
    created = describe(operations.create_bulk_read_job(request))
    out: dict[str, Any] = {"create": created}
    try:
        job_id = int(created["data"][0]["details"]["values"]["id"])
    except (KeyError, IndexError, TypeError, ValueError):
        return out
    states = []
    for _ in range(POLL_LIMIT):
        details = describe(operations.get_bulk_read_job_details(job_id))
        state = (details.get("data") or [{}])[0].get("values", {}).get("state")
        states.append(state)
        if state not in ("ADDED", "QUEUED", "IN PROGRESS"):
            break
        time.sleep(POLL_SECONDS)
    out["states"] = states
    out["details"] = details
    if states[-1] == "COMPLETED":
        out["download"] = download(operations.download_result(job_id), workdir)
    return out


def run_bulk_step(step: dict[str, Any]) -> dict[str, Any]:
    if step["op"] == "bulk_read":
        return bulk_read(step, Path.cwd())
    return run_step(step)


if __name__ == "__main__":
    main(run_bulk_step)
