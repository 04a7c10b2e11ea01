"""The v8 SDK's Bulk Read (zohocrmsdk8-0 7.0.0), unmodified, against a live server.

The SDK runs in a child process (tests/clients/sdk8_bulk_driver.py): it creates a job, polls
its details until COMPLETED, downloads the zip and unzips it, as a client of the SDK does.
What it parsed and the CSV it got are cross-checked with the records API over plain HTTP.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.clients.sdkrun import logged_errors, logged_requests, run_driver
from tests.conftest import Live

LEADS = [
    {"Last_Name": "Ames", "Company": "Acme", "No_of_Employees": 12, "Lead_Status": "Contacted"},
    {"Last_Name": "Boyd", "Company": "acme two", "No_of_Employees": 3},
    {"Last_Name": "Cole", "Company": "Beta", "No_of_Employees": 40, "Lead_Status": "Junk Lead"},
    {"Last_Name": "Dunn", "Company": "Beta", "No_of_Employees": 40, "Lead_Status": "Contacted"},
    {"Last_Name": "Egan", "Company": "Gamma", "No_of_Employees": 7, "Lead_Status": "Junk Lead"},
    {"Last_Name": "Fox"},
    {"Last_Name": "Gray", "Company": "ACME Corp", "Lead_Status": "Lost Lead"},
]
CRITERIA: dict[str, Any] = {"group_operator": "or", "group": [
    {"field": {"api_name": "Company"}, "comparator": "starts_with", "value": "acme"},
    {"group_operator": "and", "group": [
        {"field": {"api_name": "No_of_Employees"}, "comparator": "greater_equal", "value": 10},
        {"field": {"api_name": "Lead_Status"}, "comparator": "in",
         "value": ["Contacted", "Junk Lead"]}]}]}


def matches(lead: dict[str, Any]) -> bool:
    """CRITERIA, by hand (text comparisons are case-insensitive)."""
    company = (lead.get("Company") or "").lower()
    employees = lead.get("No_of_Employees")
    return company.startswith("acme") or (
        employees is not None and employees >= 10
        and lead.get("Lead_Status") in ("Contacted", "Junk Lead"))


def bulk_session(live: Live, workdir: Path, *steps: dict[str, Any]) -> list[dict[str, Any]]:
    """One SDK session; checks that hold for every session."""
    report = run_driver("sdk8_bulk_driver.py", live, workdir, list(steps), timeout=120)
    assert "initialize_error" not in report, report
    assert [r for r in report["results"] if "exception" in r] == []
    assert logged_errors(workdir) == []
    assert report["environment_url"] == live.base_url
    for request in logged_requests(workdir):
        assert request["url"].startswith(live.base_url + "/crm/"), request
    return report["results"]  # type: ignore[no-any-return]


def listed(api: httpx.Client) -> list[dict[str, Any]]:
    """Every Lead the records API lists, page by page."""
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        r = api.get("/crm/v8/Leads", params={
            "fields": "Last_Name,Company,No_of_Employees,Lead_Status", "per_page": 2,
            "page": page})
        assert r.status_code in (200, 204), r.text
        if r.status_code == 204:
            return out
        body = r.json()
        out += body["data"]
        if not body["info"]["more_records"]:
            return out
        page += 1


def ids_of(rows: list[list[str]]) -> list[str]:
    return [row[0] for row in rows[1:]]


class TestBulkRead:
    """create_bulk_read_job, get_bulk_read_job_details until COMPLETED, download_result."""

    def test_export_all_and_with_criteria(self, live: Live, api: httpx.Client,
                                          tmp_path: Path) -> None:
        r = api.post("/crm/v8/Leads", json={"data": LEADS})
        assert r.status_code == 201, r.text
        created = [d["details"]["id"] for d in r.json()["data"]]
        gone = {created[1], created[4]}  # one that matches CRITERIA, one that does not
        r = api.delete("/crm/v8/Leads", params={"ids": ",".join(sorted(gone))})
        assert r.status_code == 200, r.text
        records = listed(api)
        assert {x["id"] for x in records} == set(created) - gone
        user = api.get("/crm/v8/users", params={"type": "CurrentUser"}).json()["users"][0]

        work = tmp_path / "sdk"
        every, some = bulk_session(
            live, work,
            {"op": "bulk_read", "module": "Leads", "fields": ["Last_Name", "Company"]},
            {"op": "bulk_read", "module": "Leads", "fields": ["Company"],
             "criteria": CRITERIA})

        matching = [x for x in records if matches(x)]
        assert sorted(x["Last_Name"] for x in matching) == ["Ames", "Cole", "Dunn", "Gray"]
        for run, fields, expected in ((every, ["Last_Name", "Company"], records),
                                      (some, ["Company"], matching)):
            job_id = self.check_job(run, fields, user, len(expected))
            download = run["download"]
            assert (download["status"], download["class"]) == (200, "FileBodyWrapper")
            assert download["file_name"] == f"{job_id}.zip"
            assert download["members"] == [f"{job_id}.csv"]
            rows = download["csv"][f"{job_id}.csv"]
            assert rows[0] == ["Id", *fields]
            assert ids_of(rows) == sorted((x["id"] for x in expected), key=int)
            assert not gone & set(ids_of(rows))
            by_id = {x["id"]: x for x in expected}
            for row in rows[1:]:
                assert row[1:] == [by_id[row[0]][f] or "" for f in fields]
        # The SDK sent the criteria as built, and parses the server's echo of it.
        (detail,) = some["details"]["data"]
        assert without_field_ids(detail["query"]["criteria"]) == CRITERIA

        calls = [(c["method"], c["url"]) for c in logged_requests(work)]
        base = live.base_url + "/crm/bulk/v8/read"
        for run in (every, some):
            job_id = run["create"]["data"][0]["details"]["values"]["id"]
            assert ("GET", f"{base}/{job_id}/result") in calls
            assert calls.count(("GET", f"{base}/{job_id}")) == len(run["states"])
        assert calls.count(("POST", base)) == 2

    def check_job(self, run: dict[str, Any], fields: list[str], user: dict[str, Any],
                  count: int) -> str:
        """The create reply and the final job details as the SDK parsed them; the job id."""
        create = run["create"]
        assert (create["status"], create["class"]) == (201, "ActionWrapper")
        (added,) = create["data"]
        assert (added["class"], added["status"], added["code"], added["message"]) == (
            "SuccessResponse", "success", "ADDED_SUCCESSFULLY", "Added successfully.")
        values, types = added["details"]["values"], added["details"]["types"]
        job_id = values["id"]
        assert isinstance(job_id, str) and job_id.isdigit()
        assert (values["operation"], values["state"]) == ("read", "ADDED")
        assert types["created_by"] == "MinifiedUser" and types["created_time"] == "datetime"
        assert values["created_by"]["id"] == int(user["id"])

        assert run["states"][-1] == "COMPLETED"
        assert set(run["states"]) <= {"ADDED", "QUEUED", "IN PROGRESS", "COMPLETED"}
        details = run["details"]
        assert (details["status"], details["class"]) == (200, "ResponseWrapper")
        (detail,) = details["data"]
        assert detail["values"]["id"] == job_id
        assert (detail["values"]["operation"], detail["values"]["state"]) == ("read", "COMPLETED")
        assert detail["types"]["state"] == "Choice"
        assert (detail["types"]["created_by"], detail["types"]["created_time"]) == (
            "MinifiedUser", "datetime")
        assert datetime.fromisoformat(detail["values"]["created_time"]) == datetime.fromisoformat(
            values["created_time"])
        assert detail["values"]["file_type"] == "csv"
        assert detail["query"]["module"]["api_name"] == "Leads"
        assert detail["query"]["fields"] == fields
        assert detail["query"]["page"] == 1
        result = detail["result"]
        assert {k: result["values"][k] for k in ("page", "per_page", "count", "download_url",
                                                 "more_records")} == {
            "page": 1, "per_page": 200000, "count": count,
            "download_url": f"/crm/bulk/v8/read/{job_id}/result", "more_records": False}
        assert {k: result["types"][k] for k in ("page", "per_page", "count", "more_records")} \
            == {"page": "int", "per_page": "int", "count": "int", "more_records": "bool"}
        assert result["types"]["next_page_token"] in ("NoneType", "str")
        return str(job_id)


def without_field_ids(node: dict[str, Any]) -> dict[str, Any]:
    """A criteria the SDK parsed, without the `id` of each leaf's field (None, or an int)."""
    if "group" in node:
        return {"group_operator": node["group_operator"],
                "group": [without_field_ids(child) for child in node["group"]]}
    field = dict(node["field"])
    ident = field.pop("id")
    assert ident is None or isinstance(ident, int), node
    return {**node, "field": field}
