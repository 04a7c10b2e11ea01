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
        echoed = _job["query"]["criteria"]  # leaves echoed as field: {id, api_name}
        assert echoed["group_operator"] == "or"
        first = echoed["group"][0]
        assert first["comparator"] == "starts_with" and first["value"] == "acme"
        assert first["field"]["api_name"] == "Company" and first["field"]["id"].isdigit()
        assert "api_name" not in first

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
        status, err = error({"query": {"module": "Leads", "cvid": "42"}})
        assert status == 400 and err["code"] == "INVALID_DATA"
        assert err["details"]["api_name"] == "cvid"
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
    """The runner on its own, beside runners that died (a thread instead of a process)."""

    def test_leases_takeover_and_failure(self, database_url: str) -> None:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        from crmwatch.bulk.jobs import job_json
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

        def claim(job: Any, owner: str, lease_ms: int, times: int = 1) -> None:
            for _ in range(times):
                got = run_flow(database_url, store_bulk.claim(job.id, owner, now_ms(),
                                                              lease_ms, 3))
                assert got is not None and got.lease_owner == owner

        leads = {"module": {"api_name": "Leads"}}
        crashed = add(leads)  # its runner died: the lease lapsed a minute ago
        claim(crashed, "dead-1", -60_000)
        cursed = add(leads)  # killed its runner three times already
        claim(cursed, "dead-2", -60_000, times=3)
        held = add(leads)  # another live runner holds it for an hour
        claim(held, "alive", 3_600_000)
        bad = add({**leads, "criteria": {
            "field": {"api_name": "Gone"}, "comparator": "equal", "value": "x"}})

        async def main() -> dict[str, Any]:
            store = open_store(database_url)
            if hasattr(store, "run_sequencer"):
                store.run_sequencer = False
            await store.start()
            runner = BulkRunner(Settings(database_url=database_url), store,
                                poll_seconds=0.05, executor=ThreadPoolExecutor(1))
            await runner.start()
            try:
                for _ in range(400):
                    jobs = {name: await store.read(store_bulk.get_job(org.id, job.id))
                            for name, job in [("crashed", crashed), ("cursed", cursed),
                                              ("held", held), ("bad", bad)]}
                    if all(j.state in (BulkState.COMPLETED, BulkState.FAILURE)
                           for name, j in jobs.items() if name != "held"):
                        break
                    await asyncio.sleep(0.05)
                return jobs
            finally:
                await runner.stop()
                await store.close()

        jobs = asyncio.run(main())
        done = jobs["crashed"]
        assert done.state is BulkState.COMPLETED and done.count == 0 and done.attempts == 2
        assert done.more_records is False and done.file_path.endswith(f"{done.id}.zip")
        assert done.lease_owner is None
        assert jobs["cursed"].state is BulkState.FAILURE
        assert "interrupted 3 times" in (jobs["cursed"].error or "")
        assert jobs["held"].state is BulkState.IN_PROGRESS
        assert jobs["held"].lease_owner == "alive" and jobs["held"].attempts == 1
        failed = jobs["bad"]
        assert failed.state is BulkState.FAILURE and "Gone" in (failed.error or "")
        shown = job_json(failed)
        assert shown["state"] == "FAILURE"
        assert shown["result"]["error_message"]["code"] == "INTERNAL_SERVER_ERROR"
        assert "Gone" in shown["result"]["error_message"]["details"]["reason"]

    def test_two_runners_share_the_jobs(self, database_url: str) -> None:
        """Two runners (as in two worker processes) on one database: every job runs once."""
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        from crmwatch.bulk.runner import BulkRunner
        from crmwatch.catalog import standard_modules
        from crmwatch.config import Settings
        from crmwatch.domain.states import BulkState
        from crmwatch.store import bulk as store_bulk
        from crmwatch.store import open_store, tenants
        from tests.conftest import now_ms, run_flow

        org = run_flow(database_url, tenants.create_org("pair", "UTC", standard_modules(),
                                                        now_ms()))
        jobs = [run_flow(database_url, store_bulk.create_job(
            org.id, org.id_prefix, "Leads", {"module": {"api_name": "Leads"}}, "csv", None,
            {"id": "1", "name": "x"}, {"columns": [], "types": {}, "tz": "UTC"}, 1, now_ms()))
            for _ in range(8)]

        async def main() -> list[Any]:
            stores = [open_store(database_url) for _ in range(2)]
            runners = []
            for store in stores:
                if hasattr(store, "run_sequencer"):
                    store.run_sequencer = False
                await store.start()
                runners.append(BulkRunner(Settings(database_url=database_url), store,
                                          poll_seconds=0.02, executor=ThreadPoolExecutor(1)))
            for runner in runners:
                await runner.start()
            try:
                for _ in range(500):
                    done = [await stores[0].read(store_bulk.get_job(org.id, j.id))
                            for j in jobs]
                    if all(d.state is BulkState.COMPLETED for d in done):
                        break
                    await asyncio.sleep(0.02)
                return done
            finally:
                for runner in runners:
                    await runner.stop()
                for store in stores:
                    await store.close()

        done = asyncio.run(main())
        assert [d.state for d in done] == [BulkState.COMPLETED] * 8
        assert [d.attempts for d in done] == [1] * 8

    def test_stopping_gives_the_job_back(self, database_url: str) -> None:
        """A runner stopped mid-export puts its job back to ADDED, attempt not counted."""
        import asyncio
        import threading
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
        job = run_flow(database_url, store_bulk.create_job(
            org.id, org.id_prefix, "Leads", {"module": {"api_name": "Leads"}}, "csv", None,
            {"id": "1", "name": "x"}, {"columns": [], "types": {}, "tz": "UTC"}, 1, now_ms()))
        gate = threading.Event()
        pool = ThreadPoolExecutor(1)
        pool.submit(gate.wait, 30)  # the executor is busy: the export cannot start

        async def main() -> tuple[Any, Any]:
            store = open_store(database_url)
            if hasattr(store, "run_sequencer"):
                store.run_sequencer = False
            await store.start()
            runner = BulkRunner(Settings(database_url=database_url), store,
                                poll_seconds=0.05, executor=pool)
            await runner.start()
            try:
                for _ in range(200):
                    running = await store.read(store_bulk.get_job(org.id, job.id))
                    if running.state is BulkState.IN_PROGRESS:
                        break
                    await asyncio.sleep(0.02)
                await runner.stop()
                return running, await store.read(store_bulk.get_job(org.id, job.id))
            finally:
                gate.set()
                await store.close()

        running, after = asyncio.run(main())
        pool.shutdown()
        assert running.state is BulkState.IN_PROGRESS and running.attempts == 1
        assert after.state is BulkState.ADDED and after.attempts == 0
        assert after.lease_owner is None


def test_format_value() -> None:
    from zoneinfo import ZoneInfo

    from crmwatch.bulk.cells import format_value

    la = ZoneInfo("America/Los_Angeles")
    assert format_value("text", None, la) == ""
    assert format_value("lookup", {"name": "Acme", "id": "42"}, la) == "42"
    assert format_value("ownerlookup", {"name": "P", "id": "7", "email": "p@x"}, la) == "7"
    assert format_value("boolean", False, la) == "false"
    assert format_value("multiselectpicklist", ["a", "b"], la) == "a;b"
    assert format_value("datetime", "2026-11-23T12:00:00+00:00", la) == \
        "2026-11-23T04:00:00-08:00"
    assert format_value("integer", 5, la) == "5"


def _served(database_url: str, **settings: Any) -> Any:
    """A server with its own settings, and an authorised client of it."""
    import contextlib

    from tests.conftest import start_server

    @contextlib.contextmanager
    def cm() -> Any:
        server = start_server(database_url, **settings)
        try:
            with server.http() as client:
                yield server, client
        finally:
            server.stop()

    return cm()


class TestPageToken:
    def test_next_page_by_token(self, live: Live, api: httpx.Client) -> None:
        """A page that is not the last gives a next_page_token (v7+); a job made from it
        exports the records after the page's last, with the same query."""
        from crmwatch.store import bulk as store_bulk
        from crmwatch.store import tenants
        from tests.conftest import now_ms, run_flow

        ids = sorted(add_leads(api, [{"Last_Name": f"T{i}"} for i in range(5)]), key=int)
        first, _rows = export(api, {"module": {"api_name": "Leads"}, "fields": ["Last_Name"]})
        stored = run_flow(live.database_url, store_bulk.get_job(live.org_id, int(first["id"])),
                          write=False)
        org = run_flow(live.database_url, tenants.get_org(live.org_id), write=False)
        small = run_flow(live.database_url, store_bulk.create_job(
            live.org_id, org.id_prefix, "Leads", stored.query, "csv", None,
            stored.created_by, stored.plan, 1, now_ms(), per_page=2))
        job = wait_done(api, str(small.id))
        assert job["result"]["count"] == 2 and job["result"]["more_records"] is True
        token = job["result"]["next_page_token"]
        assert [r[0] for r in download(api, job["id"])[1:]] == ids[:2]

        r = api.post("/crm/bulk/v6/read", json={"query": {"page_token": token}})
        assert r.status_code == 400 and r.json()["data"][0]["code"] == "INVALID_DATA"
        r = api.post("/crm/bulk/v8/read", json={"query": {"page_token": "nope"}})
        assert r.status_code == 400
        assert r.json()["data"][0]["details"]["api_name"] == "page_token"
        r = api.post("/crm/bulk/v8/read", json={"query": {"page_token": token}})
        assert r.status_code == 201, r.text
        second = wait_done(api, r.json()["data"][0]["details"]["id"])
        assert second["query"]["page"] == 2
        assert second["query"]["fields"] == ["Last_Name"]
        assert second["result"]["count"] == 3 and second["result"]["more_records"] is False
        assert "next_page_token" not in second["result"]
        rows = download(api, second["id"])
        assert rows[0] == ["Id", "Last_Name"]
        assert [r[0] for r in rows[1:]] == ids[2:]

        from crmwatch.catalog import standard_modules

        run_flow(live.database_url, tenants.create_org("elsewhere", "UTC", standard_modules(),
                                                       now_ms()))
        other = live.new_client("ZohoCRM.bulk.read,ZohoCRM.modules.ALL", org="elsewhere")
        token2 = httpx.post(live.base_url + "/oauth/v2/token", data={
            "grant_type": "refresh_token", "client_id": other.client_id,
            "client_secret": other.client_secret,
            "refresh_token": other.refresh_token}).json()["access_token"]
        r = httpx.post(live.base_url + "/crm/bulk/v8/read",
                       headers={"Authorization": f"Zoho-oauthtoken {token2}"},
                       json={"query": {"page_token": token}})
        assert r.status_code == 400, "a token is the org's and the user's"


class TestCallbacks:
    def test_callback_retried_until_taken(self, database_url: str, receiver: Any) -> None:
        from crmwatch.delivery import signing
        from crmwatch.store import deliveries as store_deliveries
        from tests.conftest import FAST_DELIVERY, now_ms, run_flow

        receiver.status = 500
        with _served(database_url, **FAST_DELIVERY) as (live, api):
            add_leads(api, [{"Last_Name": "CB"}])
            r = create_job(api, {"module": {"api_name": "Leads"}},
                           callback={"url": receiver.url + "/bulk-done", "method": "post"})
            job_id = r.json()["data"][0]["details"]["id"]
            receiver.wait_for(2)
            receiver.status = 200
            got = receiver.wait_for(3)
            time.sleep(1.0)  # the retry schedule is 0.2-0.5 s: a 4th would be here by now
            assert len(receiver.received) == 3
            status = api.get(f"/crm/bulk/v8/read/{job_id}").json()["data"][0]
            keys = run_flow(database_url, store_deliveries.signing_secrets(
                live.org_id, now_ms(), "unused"))
        for attempt, hit in enumerate(got, start=1):
            assert hit.path == "/bulk-done"
            assert hit.json == {"data": [status]}
            assert status["state"] == "COMPLETED" and status["result"]["count"] == 1
            assert hit.headers["Content-Type"] == "application/json"
            assert hit.headers["webhook-id"] == f"bulk_{job_id}"
            assert hit.headers["X-Crmwatch-Attempt"] == str(attempt)
            assert signing.verify(keys[0], hit.headers, hit.body, time.time())

    def test_write_error_fails_the_job_and_calls_back(self, database_url: str,
                                                      receiver: Any, tmp_path: Any) -> None:
        """An export that cannot write its file ends in FAILURE with the reason; the API
        keeps answering."""
        from tests.conftest import FAST_DELIVERY

        blocker = tmp_path / "not-a-directory"
        blocker.write_text("x")
        with _served(database_url, bulk_results_dir=str(blocker), **FAST_DELIVERY) as (
                _live, api):
            add_leads(api, [{"Last_Name": "W"}])
            r = create_job(api, {"module": {"api_name": "Leads"}},
                           callback={"url": receiver.url, "method": "post"})
            job = wait_done(api, r.json()["data"][0]["details"]["id"])
            assert job["state"] == "FAILURE"
            error = job["result"]["error_message"]
            assert error["code"] == "INTERNAL_SERVER_ERROR"
            assert error["details"]["reason"]
            assert str(blocker) not in error["details"]["reason"]
            (hit,) = receiver.wait_for(1)
            assert hit.json == {"data": [job]}
            assert api.get("/crm/v8/Leads").status_code == 200
            r = api.get(f"/crm/bulk/v8/read/{job['id']}/result")
            assert r.status_code == 404 and r.json()["code"] == "RESOURCE_NOT_FOUND"
        assert blocker.read_text() == "x"
        assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.zip"))


class TestLimits:
    def test_active_jobs_per_org(self, database_url: str) -> None:
        with _served(database_url, workers=False, bulk_max_active_jobs=2) as (_live, api):
            for _ in range(2):
                assert create_job(api, {"module": "Leads"}).status_code == 201
            r = create_job(api, {"module": "Leads"})
            assert r.status_code == 429, r.text
            assert r.json()["code"] == "TOO_MANY_REQUESTS"

    def test_downloads_per_minute(self, database_url: str) -> None:
        with _served(database_url, bulk_downloads_per_minute=2) as (_live, api):
            add_leads(api, [{"Last_Name": "D"}])
            job, _rows = export(api, {"module": "Leads"})
            assert len(download(api, job["id"])) == 2
            r = api.get(f"/crm/bulk/v8/read/{job['id']}/result")
            assert r.status_code == 429 and r.json()["code"] == "TOO_MANY_REQUESTS"
            assert 1 <= int(r.headers["retry-after"]) <= 60
            assert r.headers["content-type"].startswith("application/json")

    def test_results_expire(self, database_url: str) -> None:
        from crmwatch.store import bulk as store_bulk
        from tests.conftest import run_flow

        with _served(database_url, bulk_result_retention_hours=1.5 / 3600) as (live, api):
            add_leads(api, [{"Last_Name": "E"}])
            job, _rows = export(api, {"module": "Leads"})
            stored = run_flow(database_url, store_bulk.get_job(live.org_id, int(job["id"])),
                              write=False)
            import os

            assert stored.file_path and os.path.exists(stored.file_path)
            deadline = time.time() + 15
            while os.path.exists(stored.file_path):
                assert time.time() < deadline, "the result was not removed"
                time.sleep(0.1)
            r = api.get(f"/crm/bulk/v8/read/{job['id']}/result")
            assert r.status_code == 404
            assert r.json()["details"]["reason"] == "the result has expired"
            assert api.get(f"/crm/bulk/v8/read/{job['id']}").json()["data"][0]["state"] == \
                "COMPLETED"
