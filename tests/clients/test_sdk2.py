"""The official Zoho SDK for API v2 (zohocrmsdk2-0 6.0.0), unmodified, against a live server.

Each SDK session runs in a child process (tests/clients/sdk2_driver.py) that prints what the
SDK returned; the server state is cross-checked over plain HTTP with the `api` client.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.clients.sdkrun import logged_errors, logged_requests, run_driver
from tests.conftest import Live


def sdk(live: Live, workdir: Path, *steps: dict[str, Any], tz: str = "UTC") -> dict[str, Any]:
    """One SDK session: initialise, run `steps`; checks that hold for every session."""
    report = run_driver("sdk2_driver.py", live, workdir, list(steps), tz=tz)
    assert [r for r in report["results"] if "exception" in r] == []
    assert logged_errors(workdir) == []
    assert report["environment_url"] == live.base_url
    for request in logged_requests(workdir):
        assert request["url"].startswith(live.base_url + "/crm/v2/"), request
    return report


def create(api: httpx.Client, *records: dict[str, Any], module: str = "Leads") -> list[str]:
    r = api.post(f"/crm/v2/{module}", content=orjson.dumps({"data": list(records)}))
    assert r.status_code == 201, r.text
    return [item["details"]["id"] for item in r.json()["data"]]


def listing(page: int, per_page: int = 2, **extra: Any) -> dict[str, Any]:
    return {"op": "list", "module": "Leads", "params": {"page": page, "per_page": per_page},
            **extra}


class TestInitialize:
    """Set up as in clients.md 2.1, the first call stores a token for the user signature."""

    def test_token_in_the_store(self, live: Live, tmp_path: Path) -> None:
        started = time.time()
        assert sdk(live, tmp_path / "sdk")["tokens"] == []  # the token is fetched lazily
        report = sdk(live, tmp_path / "sdk", listing(1))
        assert [(r["status"], r["class"]) for r in report["results"]] == [(204, None)]
        (row,) = report["tokens"]
        assert row["user_mail"] == "a@example.com"
        assert row["refresh_token"] == live.refresh_token
        assert row["access_token"].startswith("1000.")
        assert started + 3000 < int(row["expiry_time"]) / 1000 < time.time() + 3700
        r = httpx.get(live.base_url + "/crm/v2/org",
                      headers={"Authorization": f"Zoho-oauthtoken {row['access_token']}"})
        assert r.status_code == 200
        again = sdk(live, tmp_path / "sdk", listing(1))["tokens"]
        assert [t["access_token"] for t in again] == [row["access_token"]]


class TestList:
    """`get_records` pages with page and per_page and reports info.more_records exactly."""

    def test_pages_until_more_records_is_false(self, live: Live, api: httpx.Client,
                                               tmp_path: Path) -> None:
        ids = create(api, *({"Last_Name": f"P{i}", "Company": f"C{i}"} for i in range(5)))
        work = tmp_path / "sdk"
        pages = sdk(live, work, *(listing(page) for page in (1, 2, 3, 4)))["results"]
        assert [(p["status"], p["class"]) for p in pages] == [
            (200, "ResponseWrapper")] * 3 + [(204, None)]
        infos = [p["info"] for p in pages[:3]]
        assert [i["more_records"] for i in infos] == [True, True, False]
        assert [i["page"] for i in infos] == [1, 2, 3]
        assert [i["count"] for i in infos] == [2, 2, 1]
        assert [i["per_page"] for i in infos] == [2, 2, 2]
        seen = []
        for page, p in enumerate(pages[:3], start=1):
            wire = api.get("/crm/v2/Leads", params={"page": page, "per_page": 2}).json()["data"]
            assert [r["values"]["id"] for r in p["records"]] == [int(w["id"]) for w in wire]
            for r, w in zip(p["records"], wire, strict=True):
                assert (r["values"]["Last_Name"], r["values"]["Company"]) == (
                    w["Last_Name"], w["Company"])
                assert datetime.fromisoformat(r["values"]["Modified_Time"]) == \
                    datetime.fromisoformat(w["Modified_Time"])
                assert r["types"]["id"] == "int"
                assert r["types"]["Modified_Time"] == "datetime"
            seen += [str(r["values"]["id"]) for r in p["records"]]
        assert sorted(seen) == sorted(ids)
        calls = [(c["url"].removeprefix(live.base_url), c["params"]) for c in logged_requests(work)]
        # Field metadata is fetched implicitly before the first record call, then cached.
        assert calls == [("/crm/v2/settings/fields", {"module": "Leads"})] + [
            ("/crm/v2/Leads", {"page": str(p), "per_page": "2"}) for p in (1, 2, 3, 4)]

    def test_without_fields_every_field_parses(self, live: Live, api: httpx.Client,
                                               tmp_path: Path) -> None:
        create(api, {"Last_Name": "Full", "Company": "Co", "Email": "f@example.com",
                     "No_of_Employees": 7, "Annual_Revenue": 10.5, "Email_Opt_Out": True,
                     "Lead_Status": "Contacted"})
        (page,) = sdk(live, tmp_path / "sdk", listing(1, per_page=200))["results"]
        (record,) = page["records"]
        wire = api.get("/crm/v2/Leads").json()["data"][0]
        assert set(record["values"]) == set(wire)
        types = record["types"]
        assert (types["No_of_Employees"], types["Annual_Revenue"]) == ("int", "float")
        assert (types["Email_Opt_Out"], types["Lead_Status"]) == ("bool", "Choice")
        assert (types["Created_Time"], types["Email"]) == ("datetime", "str")
        assert record["values"]["Lead_Status"] == "Contacted"
        assert record["values"]["Owner"]["id"] == int(wire["Owner"]["id"])


class TestIfModifiedSince:
    """An If-Modified-Since HeaderMap entry (ISO 8601, client's zone) filters inclusively."""

    def test_filters_on_modified_time(self, live: Live, api: httpx.Client,
                                      tmp_path: Path) -> None:
        (old,) = create(api, {"Last_Name": "Old"})
        old_time = api.get(f"/crm/v2/Leads/{old}").json()["data"][0]["Modified_Time"]
        time.sleep(1.05)  # Modified_Time has whole seconds: let the next record get a later one
        (new,) = create(api, {"Last_Name": "New"})
        new_time = api.get(f"/crm/v2/Leads/{new}").json()["data"][0]["Modified_Time"]
        assert datetime.fromisoformat(new_time) > datetime.fromisoformat(old_time)
        after = (datetime.fromisoformat(new_time) + timedelta(seconds=1)).isoformat()
        work = tmp_path / "sdk"
        got = sdk(live, work, listing(1, 200, if_modified_since=old_time),
                  listing(1, 200, if_modified_since=new_time),
                  listing(1, 200, if_modified_since=after),
                  tz="IST-5:30")["results"]  # POSIX TZ for UTC+05:30, needs no tzdata
        assert [(r["status"], r["class"]) for r in got] == [
            (200, "ResponseWrapper"), (200, "ResponseWrapper"), (204, None)]
        assert sorted(r["values"]["id"] for r in got[0]["records"]) == sorted(
            [int(old), int(new)])
        assert [r["values"]["id"] for r in got[1]["records"]] == [int(new)]
        sent = [c["headers"]["If-Modified-Since"] for c in logged_requests(work)
                if "If-Modified-Since" in c["headers"]]
        # The SDK sends the header in ISO 8601 in the client's own zone, not as an HTTP-date.
        assert all(s.endswith("+05:30") for s in sent)
        assert [datetime.fromisoformat(s) for s in sent] == [
            datetime.fromisoformat(t) for t in (old_time, new_time, after)]


class TestCreate:
    """`create_records` posts JSON without a Content-Type; the records land on the server."""

    def test_create_records(self, live: Live, api: httpx.Client, tmp_path: Path) -> None:
        (result,) = sdk(live, tmp_path / "sdk", {"op": "create", "module": "Leads", "records": [
            {"Last_Name": "A", "Company": "Co A"}, {"Last_Name": "B"}]})["results"]
        assert (result["status"], result["class"]) == (201, "ActionWrapper")
        assert [(i["class"], i["status"], i["code"]) for i in result["data"]] == [
            ("SuccessResponse", "success", "SUCCESS")] * 2
        ids = [i["details"]["values"]["id"] for i in result["data"]]
        got = [api.get(f"/crm/v2/Leads/{i}").json()["data"][0] for i in ids]
        assert [(g["Last_Name"], g["Company"]) for g in got] == [("A", "Co A"), ("B", None)]


class TestLookupsAndSubforms:
    """v2 field metadata names lookup and subform modules as plain strings, as the SDK needs."""

    def test_wire_shapes_differ_from_v8(self, api: httpx.Client) -> None:
        def fields(version: str, module: str) -> dict[str, Any]:
            r = api.get(f"/crm/{version}/settings/fields", params={"module": module})
            return {f["api_name"]: f for f in r.json()["fields"]}
        assert fields("v2", "Contacts")["Account_Name"]["lookup"]["module"] == "Accounts"
        assert fields("v8", "Contacts")["Account_Name"]["lookup"]["module"]["api_name"] == \
            "Accounts"
        assert fields("v2", "Quotes")["Quoted_Items"]["subform"]["module"] == "Quoted_Items"
        assert "subform" not in fields("v8", "Quotes")["Quoted_Items"]
        # The v2 SDK maps bigint to str: a listed `id` field would make it refuse int ids.
        assert "id" not in fields("v2", "Contacts")
        assert fields("v8", "Contacts")["id"]["data_type"] == "bigint"

    def test_records_with_lookups_and_subform_rows(self, live: Live, api: httpx.Client,
                                                   tmp_path: Path) -> None:
        (account,) = create(api, {"Account_Name": "Acme"}, module="Accounts")
        (product,) = create(api, {"Product_Name": "P1"}, module="Products")
        (quote,) = create(api, {"Subject": "Q", "Account_Name": {"id": account},
                                "Quoted_Items": [{"Product_Name": {"id": product},
                                                  "Quantity": 2}]}, module="Quotes")
        (row,) = api.get(f"/crm/v2/Quotes/{quote}").json()["data"][0]["Quoted_Items"]
        work = tmp_path / "sdk"
        created, contacts, got = sdk(
            live, work,
            {"op": "create", "module": "Contacts",
             "records": [{"Last_Name": "Lee", "Account_Name": {"lookup": account}}]},
            {"op": "list", "module": "Contacts", "params": {"page": 1}},
            {"op": "get", "module": "Quotes", "id": quote})["results"]
        assert (created["status"], created["data"][0]["code"]) == (201, "SUCCESS")
        contact = created["data"][0]["details"]["values"]["id"]
        wire = api.get(f"/crm/v2/Contacts/{contact}").json()["data"][0]
        assert wire["Account_Name"] == {"name": "Acme", "id": account}
        (listed,) = contacts["records"]
        assert listed["types"]["Account_Name"] == "Record"
        assert listed["values"]["Account_Name"]["id"] == int(account)
        (record,) = got["records"]
        assert record["types"]["Quoted_Items"] == "list"
        assert [r["id"] for r in record["values"]["Quoted_Items"]] == [int(row["id"])]
        assert record["values"]["Account_Name"]["id"] == int(account)
        # Every module the SDK asked field metadata for is a plain module name.
        names = {m["api_name"] for m in api.get("/crm/v2/settings/modules").json()["modules"]}
        asked = [c["params"]["module"] for c in logged_requests(work)
                 if c["url"].endswith("/settings/fields")]
        assert {"Contacts", "Accounts", "Quotes", "Quoted_Items", "Products"} <= set(asked)
        assert set(asked) <= names
