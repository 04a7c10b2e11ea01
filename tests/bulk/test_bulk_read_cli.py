"""`crmwatch bulk-read`: against the real server on both backends, against a scripted Zoho for
what a small test cannot make the real one do (429, pages, FAILURE), and its decisions alone."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from crmwatch.cli import main
from crmwatch.client import bulkread
from crmwatch.client.zoho import (
    ApiError,
    Credentials,
    ZohoClient,
    parse_error,
    retry_after_seconds,
)
from tests.bulk.test_bulk_read import add_leads, listed_ids
from tests.conftest import Live

ZOHO_ENV = ("ZOHO_API_URL", "ZOHO_ACCOUNTS_URL", "ZOHO_CLIENT_ID", "ZOHO_CLIENT_SECRET",
            "ZOHO_REFRESH_TOKEN")


def bulk_read(*args: str, env: dict[str, str] | None = None) -> Result:
    """The command in-process, with no ZOHO_* variables but those in `env`."""
    clean: dict[str, str | None] = dict.fromkeys(ZOHO_ENV)
    clean.update(env or {})
    return CliRunner().invoke(main, ["bulk-read", "--poll-seconds", "0.05", "--timeout", "60",
                                     *args], env=clean)


def credentials(live: Live, **override: str) -> list[str]:
    given = {"--api-url": live.base_url, "--client-id": live.client_id,
             "--client-secret": live.client_secret, "--refresh-token": live.refresh_token,
             **override}
    return [x for k, v in given.items() for x in (k, v)]


def read_zip(path: Path) -> list[list[str]]:
    with zipfile.ZipFile(path) as zf:
        (name,) = zf.namelist()
        assert name.endswith(".csv")
        return list(csv.reader(io.StringIO(zf.read(name).decode())))


class TestAgainstCrmwatch:
    """The command exports what the records API lists, and says why when it cannot."""

    def test_export_equals_listing(self, live: Live, api: httpx.Client,
                                   tmp_path: Path) -> None:
        ids = add_leads(api, [{"Last_Name": f"L{i}", "Company": f"C{i}"} for i in range(5)])
        api.delete("/crm/v8/Leads", params={"ids": ids[2]})
        out = tmp_path / "leads.zip"
        r = bulk_read("--module", "Leads", "--out", str(out), *credentials(live))
        assert r.exit_code == 0, r.output
        rows = read_zip(out)
        assert rows[0][0] == "Id" and "Last_Name" in rows[0]
        assert [row[0] for row in rows[1:]] == listed_ids(api) == sorted(
            set(ids) - {ids[2]}, key=int)
        job_id = read_zip_name(out)
        assert f"job {job_id}: page 1, 4 records" in r.stdout and str(out) in r.stdout
        assert f"job {job_id}: COMPLETED" in r.stderr and "downloading" in r.stderr
        assert not list(tmp_path.glob("*.part"))

        # From the environment, with only the accounts URL: the API is the token's api_domain.
        out2 = tmp_path / "two.zip"
        r = bulk_read("--module", "Leads", "--fields", "Company, Last_Name", "--out", str(out2),
                      env={"ZOHO_ACCOUNTS_URL": live.base_url, "ZOHO_CLIENT_ID": live.client_id,
                           "ZOHO_CLIENT_SECRET": live.client_secret,
                           "ZOHO_REFRESH_TOKEN": live.refresh_token})
        assert r.exit_code == 0, r.output
        rows = read_zip(out2)
        assert rows[0] == ["Id", "Company", "Last_Name"]
        assert [row[0] for row in rows[1:]] == listed_ids(api)

    def test_criteria_both_forms(self, live: Live, api: httpx.Client, tmp_path: Path) -> None:
        add_leads(api, [{"Last_Name": n, "Company": c} for n, c in
                        [("A", "Acme"), ("B", "Beta"), ("C", "acme"), ("D", "Acme: Two")]])
        r = api.get("/crm/v8/Leads/search", params={"criteria": "(Company:equals:Acme)"})
        searched = sorted((d["id"] for d in r.json()["data"]), key=int)
        assert len(searched) == 2
        out = tmp_path / "short.zip"
        r = bulk_read("--module", "Leads", "--criteria", "Company:equal:Acme", "--out",
                      str(out), *credentials(live))
        assert r.exit_code == 0, r.output
        assert [row[0] for row in read_zip(out)[1:]] == searched
        r = bulk_read("--module", "Leads", "--criteria", "Company:equal:Acme: Two", "--out",
                      str(out), *credentials(live))
        assert r.exit_code == 0, r.output
        assert len(read_zip(out)) == 2
        criteria = {"group_operator": "or", "group": [
            {"field": {"api_name": "Company"}, "comparator": "starts_with", "value": "acme"},
            {"field": {"api_name": "Last_Name"}, "comparator": "in", "value": ["B", "Z"]}]}
        r = bulk_read("--module", "Leads", "--criteria", json.dumps(criteria), "--out",
                      str(out), *credentials(live))
        assert r.exit_code == 0, r.output
        assert len(read_zip(out)) == 5
        r = bulk_read("--module", "Leads", "--criteria", "Last_Name:in:A,B", "--out",
                      str(out), *credentials(live))
        assert r.exit_code == 0, r.output
        assert len(read_zip(out)) == 3

    def test_errors(self, live: Live, tmp_path: Path) -> None:
        folder = tmp_path / "out"
        folder.mkdir()
        out = folder / "x.zip"

        def fails(*args: str, **creds: str) -> str:
            r = bulk_read("--out", str(out), *args, *credentials(live, **creds))
            assert r.exit_code == 1, r.output
            assert not list(folder.iterdir())
            line = r.stderr.strip().splitlines()[-1]
            assert line.startswith("Error: ")
            return line

        assert "invalid_client_secret" in fails("--module", "Leads", **{"--client-secret": "x"})
        assert "invalid_code" in fails("--module", "Leads", **{"--refresh-token": "1000.x"})
        assert "invalid_client" in fails("--module", "Leads", **{"--client-id": "1000.NOPE"})
        line = fails("--module", "Nope")
        assert "MODULE_NOT_AVAILABLE" in line and "'Nope'" in line
        assert "FIELD_NOT_AVAILABLE" in fails("--module", "Leads", "--fields", "Last_Name,Nope")
        line = fails("--module", "Leads", "--criteria", "Nope:equal:x")
        assert "FIELD_IN_CRITERIA_NOT_AVAILABLE" in line
        r = bulk_read("--module", "Leads", "--out", str(out), "--criteria", "{bad",
                      *credentials(live))
        assert r.exit_code == 2 and "--criteria" in r.output
        r = bulk_read("--module", "Leads", "--out", str(out), "--client-id", "a",
                      "--client-secret", "b", "--refresh-token", "c")
        assert r.exit_code == 2 and "--accounts-url" in r.output
        r = bulk_read("--module", "Leads", "--out", str(tmp_path / "no" / "such.zip"),
                      *credentials(live))
        assert r.exit_code == 1 and "such.zip" in r.output

    def test_refreshes_a_refused_token(self, live: Live, api: httpx.Client) -> None:
        (lid,) = add_leads(api, [{"Last_Name": "T"}])

        async def run() -> Any:
            creds = Credentials(live.client_id, live.client_secret, live.refresh_token)
            async with ZohoClient(creds, accounts_url=live.base_url, api_url=live.base_url,
                                  access_token="1000.stale") as zoho:
                return await zoho.call("GET", f"/crm/v8/Leads/{lid}")

        assert asyncio.run(run())["data"][0]["id"] == lid


def read_zip_name(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()[0].removesuffix(".csv")


# -- a scripted Zoho ------------------------------------------------------------------------

def zipped(job_id: str, ids: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{job_id}.csv", "Id\n" + "".join(f"{i}\n" for i in ids))
    return buf.getvalue()


@dataclass
class ScriptedJob:
    """States the status endpoint walks through, then the result; `throttle` 429s first."""

    states: list[str]
    result: dict[str, Any]
    ids: list[str] = field(default_factory=list)
    throttle: int = 0


@dataclass
class FakeZoho:
    """A Zoho on a loopback port (aiohttp, own thread) that plays `jobs` in order."""

    jobs: list[ScriptedJob]
    created: list[Any] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("client_secret") != "s":
            return web.json_response({"error": "invalid_client_secret"})
        return web.json_response({"access_token": "1000.a", "api_domain": self.url,
                                  "token_type": "Bearer", "expires_in": 3600})

    async def create(self, request: web.Request) -> web.Response:
        assert request.headers["Content-Type"] == "application/json"
        self.created.append(await request.json())
        job_id = str(1000 + len(self.created))
        return web.json_response({"data": [{
            "status": "success", "code": "ADDED_SUCCESSFULLY", "message": "Added successfully.",
            "details": {"id": job_id, "operation": "read", "state": "ADDED"}}], "info": {}},
            status=201)

    def job(self, request: web.Request) -> ScriptedJob:
        return self.jobs[int(request.match_info["id"]) - 1001]

    async def status(self, request: web.Request) -> web.Response:
        job = self.job(request)
        state = job.states.pop(0) if len(job.states) > 1 else job.states[0]
        doc: dict[str, Any] = {"id": request.match_info["id"], "operation": "read",
                               "state": state}
        if state in ("COMPLETED", "FAILURE"):
            doc["result"] = job.result
        return web.json_response({"data": [doc]})

    async def result(self, request: web.Request) -> web.StreamResponse:
        job = self.job(request)
        if job.throttle:
            job.throttle -= 1
            return web.json_response({"code": "TOO_MANY_REQUESTS", "message": "slow down",
                                      "status": "error", "details": {}}, status=429,
                                     headers={"Retry-After": "0"})
        body = zipped(request.match_info["id"], job.ids)
        resp = web.StreamResponse(headers={"Content-Type": "application/zip"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for k in range(0, len(body), 100):
            await resp.write(body[k:k + 100])
        await resp.write_eof()
        return resp

    def start(self) -> FakeZoho:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        app = web.Application()
        app.router.add_post("/oauth/v2/token", self.token)
        app.router.add_post("/crm/bulk/v8/read", self.create)
        app.router.add_get("/crm/bulk/v8/read/{id}", self.status)
        app.router.add_get("/crm/bulk/v8/read/{id}/result", self.result)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, sock).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        threading.Thread(target=run, daemon=True).start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture
def fake() -> Iterator[FakeZoho]:
    server = FakeZoho([]).start()
    try:
        yield server
    finally:
        server.stop()


def fake_args(fake: FakeZoho) -> list[str]:
    return ["--accounts-url", fake.url, "--client-id", "c", "--client-secret", "s",
            "--refresh-token", "r"]


class TestAgainstScriptedZoho:
    """Page following, 429s, unsized downloads, FAILURE and timeouts."""

    def test_all_pages(self, fake: FakeZoho, tmp_path: Path) -> None:
        fake.jobs += [
            ScriptedJob(["ADDED", "IN PROGRESS", "COMPLETED"], {
                "page": 1, "per_page": 2, "count": 2, "more_records": True,
                "next_page_token": "tok2"}, ["1", "2"], throttle=2),
            ScriptedJob(["COMPLETED"], {"page": 2, "per_page": 2, "count": 2,
                                        "more_records": True}, ["3", "4"]),
            ScriptedJob(["COMPLETED"], {"page": 3, "per_page": 2, "count": 1,
                                        "more_records": False}, ["5"])]
        out = tmp_path / "leads.zip"
        r = bulk_read("--module", "Leads", "--fields", "Last_Name", "--criteria",
                      "Modified_Time:greater_than:2026-11-20T08:00:00+00:00", "--all-pages",
                      "--out", str(out), *fake_args(fake))
        assert r.exit_code == 0, r.output
        query = {"module": {"api_name": "Leads"}, "fields": ["Last_Name"], "criteria": {
            "field": {"api_name": "Modified_Time"}, "comparator": "greater_than",
            "value": "2026-11-20T08:00:00+00:00"}, "page": 1}
        assert fake.created == [{"query": query}, {"query": {"page_token": "tok2"}},
                                {"query": {**query, "page": 3}}]
        files = [out, tmp_path / "leads-2.zip", tmp_path / "leads-3.zip"]
        assert sorted(tmp_path.iterdir()) == sorted(files)
        assert [[row[0] for row in read_zip(f)[1:]] for f in files] == [
            ["1", "2"], ["3", "4"], ["5"]]
        assert r.stderr.count("429") == 2
        assert "job 1001: ADDED" in r.stderr and "job 1001: IN PROGRESS" in r.stderr
        assert "job 1003: page 3, 1 records" in r.stdout and "5 records in 3 files" in r.stdout

    def test_one_page_of_many(self, fake: FakeZoho, tmp_path: Path) -> None:
        fake.jobs.append(ScriptedJob(["COMPLETED"], {"page": 4, "count": 1,
                                                     "more_records": True}, ["7"]))
        r = bulk_read("--module", "Leads", "--page", "4", "--out", str(tmp_path / "p.zip"),
                      *fake_args(fake))
        assert r.exit_code == 0, r.output
        assert len(fake.created) == 1 and fake.created[0]["query"]["page"] == 4
        assert "run again with --page 5" in r.stderr

    def test_failure_and_timeout(self, fake: FakeZoho, tmp_path: Path) -> None:
        fake.jobs += [
            ScriptedJob(["IN PROGRESS", "FAILURE"], {"error_message": {
                "status": "error", "code": "INTERNAL_SERVER_ERROR",
                "message": "Internal server error occurred.", "details": {}}}),
            ScriptedJob(["IN PROGRESS"], {})]
        out = tmp_path / "f.zip"
        r = bulk_read("--module", "Leads", "--out", str(out), *fake_args(fake))
        assert r.exit_code == 1 and not out.exists()
        assert r.stderr.strip().splitlines()[-1] == (
            "Error: bulk read job 1001 ended in FAILURE: INTERNAL_SERVER_ERROR: Internal server "
            "error occurred.")
        r = bulk_read("--module", "Leads", "--out", str(out), *fake_args(fake),
                      "--timeout", "0.2")
        assert r.exit_code == 1 and "job 1002 still IN PROGRESS after 0.2 s" in r.stderr
        r = bulk_read("--module", "Leads", "--out", str(out), *fake_args(fake),
                      "--client-secret", "bad")
        assert r.exit_code == 1 and "invalid_client_secret" in r.stderr


# -- decisions --------------------------------------------------------------------------------

QUERY: dict[str, Any] = {"module": {"api_name": "Leads"}, "fields": ["Last_Name"], "page": 1}


class TestNextQuery:
    """After a page: stop, send the page token alone, or ask for the next page number."""

    query = QUERY

    def test_last_page(self) -> None:
        assert bulkread.next_query(self.query, {"page": 1, "more_records": False}) is None
        assert bulkread.next_query(self.query, {"page": 1}) is None
        assert bulkread.next_query(self.query, {"more_records": False,
                                                "next_page_token": "t"}) is None

    def test_token_when_given(self) -> None:
        assert bulkread.next_query(self.query, {"page": 1, "more_records": True,
                                                "next_page_token": "abc"}) == {
            "page_token": "abc"}

    def test_page_number_otherwise(self) -> None:
        for token in (None, ""):
            assert bulkread.next_query(self.query, {"page": 3, "more_records": True,
                                                    "next_page_token": token}) == {
                **self.query, "page": 4}
        # No page in the result: the query's page, else 1, plus one.
        assert bulkread.next_query({**self.query, "page": 6}, {"more_records": True}) == {
            **self.query, "page": 7}
        assert bulkread.next_query({"module": "Leads"}, {"more_records": True}) == {
            "module": "Leads", "page": 2}

    def test_page_paths(self) -> None:
        out = Path("/x/leads.zip")
        assert [bulkread.page_path(out, n) for n in (1, 2, 10)] == [
            out, Path("/x/leads-2.zip"), Path("/x/leads-10.zip")]
        assert bulkread.page_path(Path("dump"), 2) == Path("dump-2")


class TestParseCriteria:
    """--criteria: JSON as given, or Field:comparator:value."""

    def test_short_form(self) -> None:
        assert bulkread.parse_criteria(" Company : equal:Acme: Two") == {
            "field": {"api_name": "Company"}, "comparator": "equal", "value": "Acme: Two"}
        assert bulkread.parse_criteria("Modified_Time:between:2026-01-01T00:00:00+00:00,"
                                       "2026-02-01T00:00:00+00:00")["value"] == [
            "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"]
        assert bulkread.parse_criteria("Email:equal:")["value"] == ""

    def test_json(self) -> None:
        doc = {"group_operator": "and", "group": [{"api_name": "A", "comparator": "equal",
                                                   "value": 1}] * 2}
        assert bulkread.parse_criteria(json.dumps(doc)) == doc

    def test_bad(self) -> None:
        for text in ("{bad", "Company", "Company:equal", ":equal:x", "Company::x"):
            with pytest.raises(ValueError):
                bulkread.parse_criteria(text)


class TestErrors:
    """Zoho's error shapes become code and message."""

    def test_shapes(self) -> None:
        err = parse_error(400, b'{"data": [{"status": "error", "code": "MODULE_NOT_AVAILABLE",'
                               b' "message": "Requested module \'X\' is not available.",'
                               b' "details": {"api_name": "module"}}]}')
        assert (err.code, err.status) == ("MODULE_NOT_AVAILABLE", 400)
        assert str(err) == ("MODULE_NOT_AVAILABLE: Requested module 'X' is not available. "
                            "(api_name=module)")
        err = parse_error(401, b'{"code": "INVALID_TOKEN", "details": {}, '
                               b'"message": "invalid oauth token", "status": "error"}')
        assert str(err) == "INVALID_TOKEN: invalid oauth token"
        assert parse_error(200, b'{"error": "invalid_code"}').code == "invalid_code"
        err = parse_error(502, b"<html>\n Bad   gateway</html>")
        assert isinstance(err, ApiError) and str(err) == "HTTP_502: <html> Bad gateway</html>"
        assert str(parse_error(500, b"")) == "HTTP_500: no error body"

    def test_retry_after(self) -> None:
        assert retry_after_seconds("7") == 7.0
        assert retry_after_seconds(None) == 60.0
        assert retry_after_seconds("Wed, 21 Oct 2026 07:28:00 GMT") == 60.0
        assert retry_after_seconds("-1") == 60.0
