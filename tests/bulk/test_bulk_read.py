"""Bulk Read end to end: a real server, a real database, the export in a child process."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from typing import Any

import httpx

from tests.conftest import Live


def add_leads(api: httpx.Client, rows: list[dict[str, Any]]) -> list[str]:
    r = api.post("/crm/v8/Leads", json={"data": rows})
    assert r.status_code == 201, r.text
    return [d["details"]["id"] for d in r.json()["data"]]


def create_job(api: httpx.Client, query: dict[str, Any], **extra: Any) -> httpx.Response:
    return api.post("/crm/bulk/v8/read", json={"query": query, **extra})


def wait_done(api: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        r = api.get(f"/crm/bulk/v8/read/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()["data"][0]
        if job["state"] in ("COMPLETED", "FAILURE"):
            return job  # type: ignore[no-any-return]
        assert job["state"] in ("ADDED", "IN PROGRESS")
        assert "result" not in job
        assert time.time() < deadline, job
        time.sleep(0.1)


def download(api: httpx.Client, job_id: str) -> list[list[str]]:
    r = api.get(f"/crm/bulk/v8/read/{job_id}/result")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == f'attachment; filename="{job_id}.zip"'
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.namelist() == [f"{job_id}.csv"]
        text = zf.read(f"{job_id}.csv").decode()
    return list(csv.reader(io.StringIO(text)))


def export(api: httpx.Client, query: dict[str, Any]) -> tuple[dict[str, Any], list[list[str]]]:
    r = create_job(api, query)
    assert r.status_code == 201, r.text
    job = wait_done(api, r.json()["data"][0]["details"]["id"])
    assert job["state"] == "COMPLETED", job
    return job, download(api, job["id"])


def listed_ids(api: httpx.Client) -> list[str]:
    r = api.get("/crm/v8/Leads", params={"sort_by": "id", "sort_order": "asc"})
    assert r.status_code == 200, r.text
    return [d["id"] for d in r.json()["data"]]


class TestBulkRead:
    def test_create_status_download(self, live: Live, api: httpx.Client) -> None:
        ids = add_leads(api, [{"Last_Name": f"L{i}", "Company": f"C{i}"} for i in range(5)])
        api.delete("/crm/v8/Leads", params={"ids": ids[1]})
        r = create_job(api, {"module": {"api_name": "Leads"}})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["info"] == {}
        item = body["data"][0]
        assert item["status"] == "success" and item["code"] == "ADDED_SUCCESSFULLY"
        assert item["message"] == "Added successfully."
        details = item["details"]
        assert details["id"].isdigit() and len(details["id"]) == 19
        assert details["operation"] == "read" and details["state"] == "ADDED"
        assert set(details["created_by"]) == {"id", "name"}
        job = wait_done(api, details["id"])
        assert job["state"] == "COMPLETED", job
        assert job["query"]["module"]["api_name"] == "Leads"
        result = job["result"]
        assert result == {"page": 1, "per_page": 200000, "count": 4, "more_records": False,
                          "download_url": f"/crm/bulk/v8/read/{details['id']}/result"}
        rows = download(api, details["id"])
        assert rows[0][0] == "Id" and "Last_Name" in rows[0] and "Company" in rows[0]
        got = [row[0] for row in rows[1:]]
        assert got == listed_ids(api) == sorted(set(ids) - {ids[1]}, key=int)
        last = rows[0].index("Last_Name")
        assert [row[last] for row in rows[1:]] == ["L0", "L2", "L3", "L4"]

    def test_fields_and_formats(self, live: Live, api: httpx.Client) -> None:
        (lid,) = add_leads(api, [{"Last_Name": "Fmt", "Email_Opt_Out": True}])
        record = api.get(f"/crm/v8/Leads/{lid}").json()["data"][0]
        _job, rows = export(api, {"module": {"api_name": "Leads"},
                                  "fields": ["Last_Name", "Owner", "Email_Opt_Out",
                                             "Created_Time"]})
        assert rows == [["Id", "Last_Name", "Owner", "Email_Opt_Out", "Created_Time"],
                        [lid, "Fmt", record["Owner"]["id"], "true", record["Created_Time"]]]

    def test_criteria_equals_search(self, live: Live, api: httpx.Client) -> None:
        add_leads(api, [{"Last_Name": n, "Company": c} for n, c in
                        [("A", "Acme"), ("B", "Beta"), ("C", "acme"), ("D", "Acme Two")]])
        _job, rows = export(api, {"module": {"api_name": "Leads"}, "fields": ["Company"],
                                  "criteria": {"field": {"api_name": "Company"},
                                               "comparator": "equal", "value": "Acme"}})
        r = api.get("/crm/v8/Leads/search", params={"criteria": "(Company:equals:Acme)"})
        assert r.status_code == 200, r.text
        searched = sorted((d["id"] for d in r.json()["data"]), key=int)
        assert [row[0] for row in rows[1:]] == searched and len(searched) == 2
        _job, rows = export(api, {"module": "Leads", "fields": ["Company"], "criteria": {
            "group_operator": "or", "group": [
                {"api_name": "Company", "comparator": "starts_with", "value": "acme"},
                {"api_name": "Last_Name", "comparator": "equal", "value": "B"}]}})
        assert len(rows) == 5

    def test_page_beyond_end(self, live: Live, api: httpx.Client) -> None:
        add_leads(api, [{"Last_Name": "P"}])
        job, rows = export(api, {"module": {"api_name": "Leads"}, "page": 2})
        assert job["result"]["count"] == 0 and job["result"]["page"] == 2
        assert len(rows) == 1 and rows[0][0] == "Id"

    def test_errors(self, live: Live, api: httpx.Client) -> None:
        def error(body: Any) -> tuple[int, dict[str, Any]]:
            r = api.post("/crm/bulk/v8/read", json=body)
            assert r.headers["content-type"].startswith("application/json")
            return r.status_code, r.json()["data"][0]

        status, err = error({"query": {"module": {"api_name": "Nope"}}})
        assert status == 400 and err["code"] == "MODULE_NOT_AVAILABLE"
        status, err = error({"query": {"module": "Leads", "fields": ["Nope"]}})
        assert status == 400 and err["code"] == "FIELD_NOT_AVAILABLE"
        assert err["details"]["api_name"] == "Nope"
        status, err = error({"query": {"module": "Leads", "criteria": {
            "field": {"api_name": "Last_Name"}, "comparator": "equal", "value": "x",
            "group_operator": "and"}}})
        assert status == 400 and err["code"] == "AMBIGUOUS_CRITERIA"
        status, err = error({"query": {"module": "Leads", "criteria": {
            "field": {"api_name": "Nope"}, "comparator": "equal", "value": "x"}}})
        assert status == 400 and err["code"].startswith("FIELD_IN_CRITERIA"), err
        status, err = error({"query": {"module": "Leads", "page": 51}})
        assert status == 400 and err["code"] == "PAGE_RANGE_EXCEEDED"
        status, err = error({"query": {"module": "Leads"},
                             "callback": {"url": "ftp://x", "method": "post"}})
        assert status == 400 and err["code"] == "INVALID_CALLBACK_URL"
        for path in ("/crm/bulk/v8/read/123", "/crm/bulk/v8/read/abc/result"):
            r = api.get(path)
            assert r.status_code == 404 and r.json()["code"] == "RESOURCE_NOT_FOUND"

    def test_scope(self, live: Live) -> None:
        creds = live.new_client("ZohoCRM.modules.ALL")
        token = httpx.post(live.base_url + "/oauth/v2/token", data={
            "grant_type": "refresh_token", "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "refresh_token": creds.refresh_token}).json()["access_token"]
        r = httpx.post(live.base_url + "/crm/bulk/v8/read",
                       headers={"Authorization": f"Zoho-oauthtoken {token}"},
                       json={"query": {"module": "Leads"}})
        assert r.status_code == 401 and r.json()["code"] == "OAUTH_SCOPE_MISMATCH"


class TestExportPaging:
    """Pages and more_records, with a small page size (the API's is fixed at 200 000)."""

    def test_pages(self, live: Live, api: httpx.Client, tmp_path: Any) -> None:
        from crmwatch.bulk import csvzip
        from crmwatch.store import bulk as store_bulk
        from tests.conftest import run_flow

        ids = add_leads(api, [{"Last_Name": f"P{i}"} for i in range(5)])
        job, _rows = export(api, {"module": {"api_name": "Leads"}, "fields": ["Last_Name"]})
        stored = run_flow(live.database_url, store_bulk.get_job(live.org_id, int(job["id"])),
                          write=False)
        spec = {**csvzip.job_spec(live.database_url, stored), "per_page": 2}
        seen: list[str] = []
        for page, (count, more) in enumerate([(2, True), (2, True), (1, False), (0, False)],
                                             start=1):
            result = csvzip.export({**spec, "page": page}, str(tmp_path))
            assert (result.count, result.more_records) == (count, more)
            with zipfile.ZipFile(result.path) as zf:
                rows = list(csv.reader(io.StringIO(zf.read(f"{job['id']}.csv").decode())))
            assert rows[0] == ["Id", "Last_Name"] and len(rows) == count + 1
            seen += [r[0] for r in rows[1:]]
        assert seen == sorted(ids, key=int)


class TestRunner:
    """The runner on its own: crash recovery and failures (a thread instead of a process)."""

    def test_requeue_and_failure(self, database_url: str) -> None:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        from crmwatch.bulk.runner import BulkRunner
        from crmwatch.catalog import standard_modules
        from crmwatch.config import Settings
        from crmwatch.domain.states import BulkState
        from crmwatch.store import bulk as store_bulk
        from crmwatch.store import open_store, tenants
        from tests.conftest import now_ms, run_flow

        org = run_flow(database_url, tenants.create_org("solo", "UTC", standard_modules(),
                                                        now_ms()))
        plan = {"columns": [["Last_Name", "text"]], "types": {"Last_Name": "text"},
                "tz": "UTC"}

        def add(query: dict[str, Any]) -> Any:
            return run_flow(database_url, store_bulk.create_job(
                org.id, org.id_prefix, "Leads", query, "csv", None, {"id": "1", "name": "x"},
                plan, 1, now_ms()))

        crashed = add({"module": {"api_name": "Leads"}})
        run_flow(database_url, store_bulk.move(crashed.id, BulkState.IN_PROGRESS, now_ms()))
        bad = add({"module": {"api_name": "Leads"}, "criteria": {
            "field": {"api_name": "Gone"}, "comparator": "equal", "value": "x"}})

        async def main() -> tuple[Any, Any]:
            store = open_store(database_url)
            if hasattr(store, "run_sequencer"):
                store.run_sequencer = False
            await store.start()
            runner = BulkRunner(Settings(database_url=database_url), store,
                                poll_seconds=0.05, executor=ThreadPoolExecutor(1))
            await runner.start()
            try:
                for _ in range(400):
                    a = await store.read(store_bulk.get_job(org.id, crashed.id))
                    b = await store.read(store_bulk.get_job(org.id, bad.id))
                    if a.state is BulkState.COMPLETED and b.state is BulkState.FAILURE:
                        break
                    await asyncio.sleep(0.05)
                return a, b
            finally:
                await runner.stop()
                await store.close()

        done, failed = asyncio.run(main())
        assert done.state is BulkState.COMPLETED and done.count == 0
        assert done.more_records is False and done.file_path.endswith(f"{done.id}.zip")
        assert failed.state is BulkState.FAILURE and "Gone" in (failed.error or "")
        from crmwatch.api.bulk import _job_json

        shown = _job_json(failed, "v8")
        assert shown["state"] == "FAILURE"
        assert shown["result"]["error_message"]["code"] == "INTERNAL_SERVER_ERROR"


def test_format_value() -> None:
    from zoneinfo import ZoneInfo

    from crmwatch.bulk.csvzip import format_value

    la = ZoneInfo("America/Los_Angeles")
    assert format_value("text", None, la) == ""
    assert format_value("lookup", {"name": "Acme", "id": "42"}, la) == "42"
    assert format_value("ownerlookup", {"name": "P", "id": "7", "email": "p@x"}, la) == "7"
    assert format_value("boolean", False, la) == "false"
    assert format_value("multiselectpicklist", ["a", "b"], la) == "a;b"
    assert format_value("datetime", "2026-11-23T12:00:00+00:00", la) == \
        "2026-11-23T04:00:00-08:00"
    assert format_value("integer", 5, la) == "5"
