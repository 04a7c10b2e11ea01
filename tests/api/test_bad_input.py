"""Bad input never hurts: Zoho's error shape and status, never a 500, nothing changed."""

from __future__ import annotations

import concurrent.futures

import httpx

from tests.conftest import Live, start_server

ERROR_KEYS = {"code", "details", "message", "status"}


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json;charset=utf-8"
    body = r.json()
    assert set(body) == ERROR_KEYS and body["status"] == "error"
    assert body["code"] == code, body


class TestRequestLevelErrors:
    """Wrong paths, methods, bodies and sizes answer Zoho's top-level error object."""

    def test_paths_and_methods(self, api: httpx.Client) -> None:
        assert_error(api.get("/crm/v9/Leads"), 404, "INVALID_URL_PATTERN")
        assert_error(api.get("/crm/v8/Leads/not-a-number"), 404, "INVALID_URL_PATTERN")
        assert_error(api.get("/nothing/here"), 404, "INVALID_URL_PATTERN")
        assert_error(api.patch("/crm/v8/Leads"), 400, "INVALID_REQUEST_METHOD")
        assert_error(api.get("/crm/v8/NoSuchModule"), 400, "INVALID_MODULE")

    def test_bodies(self, api: httpx.Client) -> None:
        cases = [(b"", "REQUIRED_PARAM_MISSING"), (b"{not json", "INVALID_DATA"),
                 (b"[1, 2]", "INVALID_DATA"), (b'{"data": {}}', "INVALID_DATA"),
                 (b'{"data": []}', "INVALID_DATA"), (b'{"other": 1}', "REQUIRED_PARAM_MISSING"),
                 ("\udcff".encode("utf-8", "surrogatepass"), "INVALID_DATA")]
        for body, code in cases:
            r = api.post("/crm/v8/Leads", content=body,
                         headers={"Content-Type": "text/plain"})
            if body == b"":
                assert r.status_code == 400
                continue
            assert_error(r, 400, code)
        assert api.get("/crm/v8/Leads").status_code == 204

    def test_non_ascii_digits(self, api: httpx.Client) -> None:
        """"²" and "٣" are digits to str.isdigit() but not to int(): 400, never a 500."""
        for path, param in [("/crm/v8/Leads", "page"), ("/crm/v8/Leads", "per_page"),
                            ("/crm/v8/Leads/deleted", "page"),
                            ("/crmwatch/v1/changes", "since"), ("/crmwatch/v1/changes", "limit")]:
            for value in ("²", "٣"):
                r = api.get(path, params={param: value})
                assert_error(r, 400, "INVALID_DATA")

    def test_integer_parameters_answer_one_way(self, api: httpx.Client) -> None:
        """Every integer query parameter: a malformed or huge value is INVALID_DATA naming
        the parameter, never a 500 (int() refuses more than 4,300 digits)."""
        cases = [("/crm/v8/Leads", "page"), ("/crm/v8/Leads", "per_page"),
                 ("/crm/v8/Leads/deleted", "page"), ("/crm/v8/Leads/deleted", "per_page"),
                 ("/crm/v8/Leads/search?word=x", "page"),
                 ("/crm/v8/Leads/search?word=x", "per_page"),
                 ("/crmwatch/v1/changes", "since"), ("/crmwatch/v1/changes", "limit"),
                 ("/crm/v8/actions/watch", "page"), ("/crm/v8/actions/watch", "per_page"),
                 ("/crmwatch/v1/deliveries", "page"), ("/crmwatch/v1/deliveries", "per_page")]
        for path, param in cases:
            for value in ("--5", "-5", "+5", "1e3", "0x10", "5" * 5000, "1" + "0" * 40, "x"):
                url, _, extra = path.partition("?")
                r = api.get(url, params={**dict([extra.split("=")] if extra else []),
                                         param: value})
                assert_error(r, 400, "INVALID_DATA")
                assert r.json()["details"]["param_name"] == param, (path, param, value)

    def test_oversize_body(self, live: Live) -> None:
        server = start_server(live.database_url, org="small", max_body_bytes=1000)
        try:
            with server.http() as api:
                big = b'{"data": [{"Last_Name": "' + b"x" * 2000 + b'"}]}'
                assert_error(api.post("/crm/v8/Leads", content=big), 413,
                             "REQUEST_ENTITY_TOO_LARGE")

                def chunks():  # type: ignore[no-untyped-def]
                    yield big[:500]
                    yield big[500:]
                r = api.post("/crm/v8/Leads", content=chunks())
                assert_error(r, 413, "REQUEST_ENTITY_TOO_LARGE")
                assert api.get("/crm/v8/Leads").status_code == 204
        finally:
            server.stop()


class TestPerRecordErrors:
    """Values of the wrong type, size or format fail their own record only."""

    def test_values(self, api: httpx.Client) -> None:
        bad = [
            {"Last_Name": 5 * "x" * 100},  # too long
            {"Last_Name": "x", "Email": "not-an-email"},
            {"Last_Name": "x", "No_of_Employees": 1.5},
            {"Last_Name": "x", "No_of_Employees": True},
            {"Last_Name": "x", "Annual_Revenue": "lots"},
            {"Last_Name": "x", "Email_Opt_Out": "true"},
            {"Last_Name": ["x"]},
            {"Last_Name": "x", "Owner": {"id": "42"}},
            {"Last_Name": "x", "id": "abc"},
            "not an object",
        ]
        r = api.post("/crm/v8/Leads", json={"data": bad})
        assert r.status_code == 400
        items = r.json()["data"]
        assert len(items) == len(bad)
        for item in items:
            assert set(item) == ERROR_KEYS and item["status"] == "error"
            assert item["code"] == "INVALID_DATA", item
        assert api.get("/crm/v8/Leads").status_code == 204

    def test_dates(self, api: httpx.Client) -> None:
        r = api.post("/crm/v8/Deals", json={"data": [
            {"Deal_Name": "a", "Stage": "Qualification", "Closing_Date": "2026-13-40"},
            {"Deal_Name": "b", "Stage": "Qualification", "Closing_Date": "2026-11-23"}]})
        assert r.status_code == 207
        assert r.json()["data"][0]["details"]["api_name"] == "Closing_Date"
        r = api.post("/crm/v8/Calls", json={"data": [
            {"Subject": "s", "Call_Type": "Outbound", "Call_Start_Time": "yesterday"}]})
        assert r.status_code == 400
        r = api.post("/crm/v8/Calls", json={"data": [
            {"Subject": "s", "Call_Type": "Outbound", "Call_Start_Time": "2026-11-23T10:00:00Z"}]})
        assert r.status_code == 201, r.text
        cid = r.json()["data"][0]["details"]["id"]
        got = api.get(f"/crm/v8/Calls/{cid}").json()["data"][0]
        assert got["Call_Start_Time"] == "2026-11-23T02:00:00-08:00"


class TestTwoServersOneDatabase:
    """Two server processes writing to one database keep the journal dense and complete."""

    def test_concurrent_servers(self, live: Live) -> None:
        second = start_server(live.database_url, org=None)
        token = live.token()
        try:
            def write(i: int) -> list[str]:
                base = (live if i % 2 else second).base_url
                with httpx.Client(base_url=base, headers={
                        "Authorization": f"Zoho-oauthtoken {token}"}) as c:
                    r = c.post("/crm/v8/Leads", json={"data": [{"Last_Name": f"S{i}"}]})
                    assert r.status_code == 201, r.text
                    return [d["details"]["id"] for d in r.json()["data"]]
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                ids = [i for chunk in pool.map(write, range(80)) for i in chunk]
            with live.http() as api:
                changes = api.get("/crmwatch/v1/changes", params={"limit": 1000}).json()
            assert [c["seq"] for c in changes["changes"]] == list(range(1, 81))
            assert sorted(c["id"] for c in changes["changes"]) == sorted(ids)
        finally:
            second.stop()
