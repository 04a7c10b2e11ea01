"""The official Zoho SDK for API v8 (zohocrmsdk8-0 7.0.0), unmodified, against a live server.

Each SDK session runs in a child process (tests/clients/sdk8_driver.py) that prints what the
SDK returned; the server state is then cross-checked over plain HTTP with the `api` client.
"""

from __future__ import annotations

import base64
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.clients.sdkrun import logged_errors, logged_requests, run_driver
from tests.conftest import Live


def sdk(live: Live, workdir: Path, *steps: dict[str, Any]) -> dict[str, Any]:
    """One SDK session: initialise, run `steps`; checks that hold for every session."""
    report = run_driver("sdk8_driver.py", live, workdir, list(steps))
    assert "initialize_error" not in report, report
    assert [r for r in report["results"] if "exception" in r] == []
    assert logged_errors(workdir) == []
    # No data-centre switch: the SDK stayed on crmwatch for every call.
    assert report["environment_url"] == live.base_url
    assert report["accounts_url"] == live.base_url + "/oauth/v2/token"
    for request in logged_requests(workdir):
        assert request["url"].startswith(live.base_url + "/crm/v8/"), request
    return report


def results(live: Live, workdir: Path, *steps: dict[str, Any]) -> list[dict[str, Any]]:
    return sdk(live, workdir, *steps)["results"]  # type: ignore[no-any-return]


def create(api: httpx.Client, module: str, *records: dict[str, Any]) -> list[str]:
    r = api.post(f"/crm/v8/{module}", content=orjson.dumps({"data": list(records)}))
    assert r.status_code == 201, r.text
    return [item["details"]["id"] for item in r.json()["data"]]


def fetch(api: httpx.Client, module: str, rid: str) -> dict[str, Any]:
    r = api.get(f"/crm/v8/{module}/{rid}")
    assert r.status_code == 200, r.text
    return r.json()["data"][0]  # type: ignore[no-any-return]


def same_instant(sdk_value: str, wire_value: str) -> bool:
    return datetime.fromisoformat(sdk_value) == datetime.fromisoformat(wire_value)


class TestInitialize:
    """`Initializer.initialize` gets a token, the current user and the org, and stays local."""

    def test_token_user_and_org(self, live: Live, api: httpx.Client, tmp_path: Path) -> None:
        started = time.time()
        report = sdk(live, tmp_path / "sdk")
        (row,) = report["tokens"]
        assert row["access_token"].startswith("1000.")
        assert row["refresh_token"] == live.refresh_token
        assert row["client_id"] == live.client_id
        assert row["api_domain"] == live.base_url
        # expires_in was read as seconds (an hour), not as milliseconds.
        expiry_s = int(row["expiry_time"]) / 1000
        assert started + 3000 < expiry_s < time.time() + 3700
        # The users and org calls succeeded: the token is stored under "email:zgid".
        email = api.get("/crm/v8/users", params={"type": "CurrentUser"}).json()["users"][0]["email"]
        zgid = api.get("/crm/v8/org").json()["org"][0]["zgid"]
        assert row["user_name"] == f"{email}:{zgid}"
        calls = logged_requests(tmp_path / "sdk")
        assert [(c["method"], c["url"], c["params"]) for c in calls] == [
            ("GET", live.base_url + "/crm/v8/users", {"type": "CurrentUser"}),
            ("GET", live.base_url + "/crm/v8/org", {}),
        ]
        assert "python-8.0" in calls[0]["headers"]["X-ZOHO-SDK"]
        # The server knows the token the SDK stored.
        r = httpx.get(live.base_url + "/crm/v8/org",
                      headers={"Authorization": f"Zoho-oauthtoken {row['access_token']}"})
        assert r.status_code == 200

    def test_cached_token_is_reused(self, live: Live, tmp_path: Path) -> None:
        first = sdk(live, tmp_path / "sdk")["tokens"]
        second = sdk(live, tmp_path / "sdk")["tokens"]
        assert len(second) == 1
        assert second[0]["access_token"] == first[0]["access_token"]
        assert second[0]["expiry_time"] == first[0]["expiry_time"]

    def test_wrong_secret_fails_initialize(self, live: Live, tmp_path: Path) -> None:
        report = run_driver("sdk8_driver.py", live, tmp_path / "sdk", [],
                            client_secret="0" * len(live.client_secret))
        assert "INVALID TOKEN ERROR" in report["initialize_error"]
        assert "invalid_client" in report["initialize_error"]
        assert logged_requests(tmp_path / "sdk") == []


class TestFieldMetadata:
    """Field metadata parses, both through FieldsOperations and when the SDK fetches it itself."""

    def test_get_fields_of_every_module(self, live: Live, api: httpx.Client,
                                        tmp_path: Path) -> None:
        modules = [m["api_name"] for m in api.get("/crm/v8/settings/modules").json()["modules"]]
        assert "Leads" in modules
        got = results(live, tmp_path / "sdk", *({"op": "fields", "module": m} for m in modules))
        for module, result in zip(modules, got, strict=True):
            assert (result["status"], result["class"]) == (200, "ResponseWrapper"), module
            wire = api.get("/crm/v8/settings/fields", params={"module": module}).json()["fields"]
            assert [f["api_name"] for f in result["fields"]] == [f["api_name"] for f in wire]
            assert [f["id"] for f in result["fields"]] == [int(f["id"]) for f in wire]
        leads = {f["api_name"]: f for f in got[modules.index("Leads")]["fields"]}
        assert leads["Last_Name"]["data_type"] == "text"
        assert leads["Last_Name"]["json_type"] == "string"
        assert leads["Last_Name"]["system_mandatory"] is True
        assert leads["Last_Name"]["custom_field"] is False
        assert leads["Company"]["data_type"] == "text"
        assert leads["Email"]["data_type"] == "email"
        assert leads["Company"]["system_mandatory"] is False

    def test_fetched_and_cached_before_the_first_record_call(self, live: Live,
                                                            tmp_path: Path) -> None:
        work = tmp_path / "sdk"
        report = sdk(live, work, {"op": "list", "module": "Contacts",
                                  "params": {"fields": "Last_Name"}})
        assert report["results"][0]["status"] == 204
        calls = [(c["method"], c["url"].removeprefix(live.base_url), c["params"])
                 for c in logged_requests(work)][2:]
        assert calls[0] == ("GET", "/crm/v8/settings/fields", {"module": "Contacts"})
        assert calls[-1] == ("GET", "/crm/v8/Contacts", {"fields": "Last_Name"})
        # Contacts.Account_Name is a lookup: the SDK fetched Accounts' fields too.
        assert ("GET", "/crm/v8/settings/fields", {"module": "Accounts"}) in calls
        user = report["tokens"][0]["user_name"]
        name = base64.b64encode((live.base_url + user).encode()).decode()
        cache = orjson.loads((work / "resources" / f"{name}.json").read_bytes())
        assert {"contacts", "accounts"} <= set(cache)
        assert cache["contacts"]["Last_Name"]["type"] == "String"
        # A second session uses the cache: no field metadata request any more.
        sdk(live, work, {"op": "list", "module": "Contacts", "params": {"fields": "Last_Name"}})
        urls = [c["url"] for c in logged_requests(work)[len(calls) + 2:]]
        assert urls[-1] == live.base_url + "/crm/v8/Contacts"
        assert not any("/settings/fields" in u for u in urls)


class TestCreate:
    """`create_records` sends several Leads in one call and parses one result per record."""

    def test_several_records_in_one_call(self, live: Live, api: httpx.Client,
                                         tmp_path: Path) -> None:
        leads = [{"Last_Name": f"Lead {i}", "Company": f"Co {i}", "Email": f"l{i}@example.com"}
                 for i in range(3)]
        (result,) = results(live, tmp_path / "sdk",
                            {"op": "create", "module": "Leads", "records": leads})
        assert (result["status"], result["class"]) == (201, "ActionWrapper")
        assert [i["class"] for i in result["data"]] == ["SuccessResponse"] * 3
        assert {(i["status"], i["code"], i["message"]) for i in result["data"]} == {
            ("success", "SUCCESS", "record added")}
        ids = [i["details"]["values"]["id"] for i in result["data"]]
        assert len(set(ids)) == 3 and all(i.isdigit() for i in ids)
        details = result["data"][0]["details"]["types"]
        assert details["Created_Time"] == "datetime"
        assert details["Created_By"] == "MinifiedUser"
        for rid, sent in zip(ids, leads, strict=True):
            got = fetch(api, "Leads", rid)
            assert {k: got[k] for k in sent} == sent
        listed = api.get("/crm/v8/Leads", params={"fields": "Last_Name"}).json()["data"]
        assert sorted(x["id"] for x in listed) == sorted(ids)

    def test_mixed_outcomes_parse_per_item(self, live: Live, api: httpx.Client,
                                           tmp_path: Path) -> None:
        (result,) = results(live, tmp_path / "sdk", {"op": "create", "module": "Leads",
                            "records": [{"Last_Name": "Ok"}, {"Company": "no name"}]})
        assert (result["status"], result["class"]) == (207, "ActionWrapper")
        ok, bad = result["data"]
        assert (ok["class"], ok["code"]) == ("SuccessResponse", "SUCCESS")
        assert (bad["class"], bad["status"], bad["code"]) == (
            "APIException", "error", "MANDATORY_NOT_FOUND")
        assert bad["details"]["values"]["api_name"] == "Last_Name"
        listed = api.get("/crm/v8/Leads", params={"fields": "Last_Name"}).json()["data"]
        assert [x["id"] for x in listed] == [ok["details"]["values"]["id"]]

    def test_typed_values_round_trip(self, live: Live, api: httpx.Client,
                                     tmp_path: Path) -> None:
        lead = {"Last_Name": "Typed", "No_of_Employees": 12, "Annual_Revenue": 1234.5,
                "Email_Opt_Out": True, "Lead_Status": {"choice": "Contacted"}}
        fields = "Last_Name,No_of_Employees,Annual_Revenue,Email_Opt_Out,Lead_Status,Owner," \
                 "Created_Time,Modified_Time"
        created, listed = results(
            live, tmp_path / "sdk", {"op": "create", "module": "Leads", "records": [lead]},
            {"op": "list", "module": "Leads", "params": {"fields": fields}})
        rid = created["data"][0]["details"]["values"]["id"]
        wire = fetch(api, "Leads", rid)
        # get_record returns every field; all of them parse.
        (got,) = results(live, tmp_path / "sdk", {"op": "get", "module": "Leads", "id": rid})
        assert (got["status"], got["class"]) == (200, "ResponseWrapper")
        assert set(got["records"][0]["values"]) == set(wire)
        assert got["records"][0]["values"]["Annual_Revenue"] == 1234.5
        assert (wire["No_of_Employees"], wire["Annual_Revenue"]) == (12, 1234.5)
        assert (wire["Email_Opt_Out"], wire["Lead_Status"]) == (True, "Contacted")
        (record,) = listed["records"]
        assert record["types"] == {
            "id": "int", "Last_Name": "str", "No_of_Employees": "int", "Annual_Revenue": "float",
            "Email_Opt_Out": "bool", "Lead_Status": "Choice", "Owner": "MinifiedUser",
            "Created_Time": "datetime", "Modified_Time": "datetime"}
        values = record["values"]
        assert values["id"] == int(rid)
        assert values["Lead_Status"] == "Contacted"
        assert values["Owner"]["id"] == int(wire["Owner"]["id"])
        assert same_instant(values["Modified_Time"], wire["Modified_Time"])

    def test_lookup_to_another_module(self, live: Live, api: httpx.Client,
                                      tmp_path: Path) -> None:
        (account,) = create(api, "Accounts", {"Account_Name": "Acme"})
        created, listed = results(
            live, tmp_path / "sdk",
            {"op": "create", "module": "Contacts",
             "records": [{"Last_Name": "Lee", "Account_Name": {"lookup": account}}]},
            {"op": "list", "module": "Contacts", "params": {"fields": "Last_Name,Account_Name"}})
        assert (created["status"], created["data"][0]["code"]) == (201, "SUCCESS")
        rid = created["data"][0]["details"]["values"]["id"]
        assert fetch(api, "Contacts", rid)["Account_Name"] == {"name": "Acme", "id": account}
        (record,) = listed["records"]
        assert record["types"]["Account_Name"] == "Record"
        assert record["values"]["Account_Name"] == {"id": int(account), "name": "Acme"}


class TestUpdate:
    """`update_record` (`PUT /Leads/{id}`, no id in the body) changes only the fields sent."""

    def test_update_record(self, live: Live, api: httpx.Client, tmp_path: Path) -> None:
        rid, other = create(api, "Leads", {"Last_Name": "U", "Company": "Old"},
                            {"Last_Name": "V", "Company": "Old"})
        (result,) = results(live, tmp_path / "sdk", {"op": "update", "module": "Leads",
                            "id": rid, "values": {"Company": "New"}})
        assert (result["status"], result["class"]) == (200, "ActionWrapper")
        (item,) = result["data"]
        assert (item["class"], item["status"], item["code"], item["message"]) == (
            "SuccessResponse", "success", "SUCCESS", "record updated")
        assert item["details"]["values"]["id"] == rid
        got = fetch(api, "Leads", rid)
        assert (got["Last_Name"], got["Company"]) == ("U", "New")
        assert got["Modified_Time"] >= got["Created_Time"]
        assert fetch(api, "Leads", other)["Company"] == "Old"

    def test_update_records_with_ids_in_the_body(self, live: Live, api: httpx.Client,
                                                 tmp_path: Path) -> None:
        a, b = create(api, "Leads", {"Last_Name": "A", "Company": "Old"},
                      {"Last_Name": "B", "Company": "Old"})
        (result,) = results(live, tmp_path / "sdk", {"op": "update_many", "module": "Leads",
                            "records": [{"id": a, "Company": "New A"},
                                        {"id": b, "Company": "New B"}]})
        assert (result["status"], result["class"]) == (200, "ActionWrapper")
        assert [(i["class"], i["code"], i["message"]) for i in result["data"]] == [
            ("SuccessResponse", "SUCCESS", "record updated")] * 2
        assert [i["details"]["values"]["id"] for i in result["data"]] == [a, b]
        assert [fetch(api, "Leads", x)["Company"] for x in (a, b)] == ["New A", "New B"]


class TestList:
    """`get_records` pages with fields, per_page and page; ids and values match the server."""

    def test_pages(self, live: Live, api: httpx.Client, tmp_path: Path) -> None:
        ids = create(api, "Leads", *({"Last_Name": f"P{i}", "Company": f"C{i}"} for i in range(5)))
        steps = [{"op": "list", "module": "Leads",
                  "params": {"fields": "Last_Name,Company", "per_page": 2, "page": page}}
                 for page in (1, 2, 3)]
        pages = results(live, tmp_path / "sdk", *steps)
        assert [(p["status"], p["class"]) for p in pages] == [(200, "ResponseWrapper")] * 3
        assert [p["info"]["page"] for p in pages] == [1, 2, 3]
        assert [p["info"]["per_page"] for p in pages] == [2, 2, 2]
        assert [p["info"]["count"] for p in pages] == [2, 2, 1]
        assert [p["info"]["more_records"] for p in pages] == [True, True, False]
        seen = []
        for page, p in enumerate(pages, start=1):
            wire = api.get("/crm/v8/Leads", params={"fields": "Last_Name,Company", "per_page": 2,
                                                    "page": page}).json()["data"]
            assert [r["values"] for r in p["records"]] == [
                {"id": int(w["id"]), "Last_Name": w["Last_Name"], "Company": w["Company"]}
                for w in wire]
            assert all(r["types"]["id"] == "int" for r in p["records"])
            seen += [str(r["values"]["id"]) for r in p["records"]]
        assert sorted(seen) == sorted(ids)

    def test_following_next_page_token(self, live: Live, api: httpx.Client,
                                       tmp_path: Path) -> None:
        ids = create(api, "Leads", *({"Last_Name": f"T{i}"} for i in range(5)))
        work = tmp_path / "sdk"
        (result,) = results(live, work, {"op": "list_by_token", "module": "Leads",
                                         "params": {"fields": "Last_Name", "per_page": 2}})
        pages = result["pages"]
        assert [(p["status"], p["class"]) for p in pages] == [(200, "ResponseWrapper")] * 3
        assert [p["info"]["more_records"] for p in pages] == [True, True, False]
        assert [len(p["records"]) for p in pages] == [2, 2, 1]
        tokens = [p["info"]["next_page_token"] for p in pages]
        assert all(isinstance(t, str) and t for t in tokens[:2]) and tokens[2] is None
        assert pages[0]["info"]["page_token_expiry_type"] == "datetime"
        seen = [str(r["values"]["id"]) for p in pages for r in p["records"]]
        assert sorted(seen) == sorted(ids)
        sent = [c["params"] for c in logged_requests(work) if c["url"].endswith("/crm/v8/Leads")]
        assert sent == [{"fields": "Last_Name", "per_page": "2"},
                        {"fields": "Last_Name", "per_page": "2", "page_token": tokens[0]},
                        {"fields": "Last_Name", "per_page": "2", "page_token": tokens[1]}]

    def test_empty_module_is_204_without_object(self, live: Live, api: httpx.Client,
                                                tmp_path: Path) -> None:
        future = (datetime.now().astimezone() + timedelta(hours=1)).isoformat(timespec="seconds")
        create(api, "Deals", {"Deal_Name": "D", "Stage": "Qualification"})
        got = results(
            live, tmp_path / "sdk",
            {"op": "list", "module": "Leads", "params": {"fields": "Last_Name"}},
            {"op": "list", "module": "Campaigns", "params": {"fields": "Campaign_Name"}},
            {"op": "list", "module": "Deals", "params": {"fields": "Deal_Name"},
             "if_modified_since": future},
            {"op": "list", "module": "Deals", "params": {"fields": "Deal_Name"}})
        assert [(r["status"], r["class"]) for r in got] == [
            (204, None), (204, None), (204, None), (200, "ResponseWrapper")]
        assert [r["values"]["Deal_Name"] for r in got[3]["records"]] == ["D"]


class TestDelete:
    """`delete_record` removes one record; deleting it again is an error item."""

    def test_delete_record(self, live: Live, api: httpx.Client, tmp_path: Path) -> None:
        gone, kept = create(api, "Leads", {"Last_Name": "Gone"}, {"Last_Name": "Kept"})
        deleted, again, listed = results(
            live, tmp_path / "sdk",
            {"op": "delete", "module": "Leads", "id": gone},
            {"op": "delete", "module": "Leads", "id": gone},
            {"op": "list", "module": "Leads", "params": {"fields": "Last_Name"}})
        assert (deleted["status"], deleted["class"]) == (200, "ActionWrapper")
        (item,) = deleted["data"]
        assert (item["class"], item["status"], item["code"], item["message"]) == (
            "SuccessResponse", "success", "SUCCESS", "record deleted")
        assert item["details"]["values"]["id"] == gone
        (error,) = again["data"]
        assert (error["class"], error["status"], error["code"]) == (
            "APIException", "error", "INVALID_DATA")
        assert [r["values"]["id"] for r in listed["records"]] == [int(kept)]
        assert api.get(f"/crm/v8/Leads/{gone}").status_code == 204
        assert fetch(api, "Leads", kept)["Last_Name"] == "Kept"
