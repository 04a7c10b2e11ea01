"""The records API against a real server, on both backends."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.conftest import Live


def create(api: httpx.Client, module: str, *records: dict[str, Any]) -> list[str]:
    r = api.post(f"/crm/v8/{module}", content=orjson.dumps({"data": list(records)}))
    assert r.status_code == 201, r.text
    return [item["details"]["id"] for item in r.json()["data"]]


class TestCreate:
    """POST creates up to 100 records, one result per record, mixed outcomes allowed."""

    def test_body_without_content_type(self, api: httpx.Client) -> None:
        r = api.post("/crm/v8/Leads", content=b'{"data": [{"Last_Name": "Ng", "Company": "Co"}]}')
        assert r.status_code == 201
        assert r.headers["content-type"] == "application/json;charset=utf-8"
        item = r.json()["data"][0]
        assert item["code"] == "SUCCESS" and item["status"] == "success"
        assert item["message"] == "record added"
        details = item["details"]
        assert len(details["id"]) == 19 and details["id"].isdigit()
        assert details["Created_Time"].endswith(("-08:00", "-07:00"))
        assert details["Created_By"]["id"].isdigit()

    def test_unticked_checkbox_is_false(self, api: httpx.Client) -> None:
        """A checkbox never set reads false, and null unticks it (Zoho has no empty one)."""
        r = api.post("/crm/v8/Leads", json={"data": [{"Last_Name": "Box"}]})
        rid = r.json()["data"][0]["details"]["id"]
        assert api.get(f"/crm/v8/Leads/{rid}").json()["data"][0]["Email_Opt_Out"] is False
        api.put(f"/crm/v8/Leads/{rid}", json={"data": [{"Email_Opt_Out": True}]})
        assert api.get(f"/crm/v8/Leads/{rid}").json()["data"][0]["Email_Opt_Out"] is True
        api.put(f"/crm/v8/Leads/{rid}", json={"data": [{"Email_Opt_Out": None}]})
        assert api.get(f"/crm/v8/Leads/{rid}").json()["data"][0]["Email_Opt_Out"] is False
        r = api.get("/crm/v8/Leads/search", params={"criteria": "(Email_Opt_Out:equals:false)"})
        assert rid in [d["id"] for d in r.json()["data"]]

    def test_mixed_success_and_failure(self, api: httpx.Client) -> None:
        r = api.post("/crm/v8/Leads", json={"data": [
            {"Last_Name": "Ok"}, {"Company": "no name"},
            {"Last_Name": "X", "No_of_Employees": "many"},
            {"Last_Name": "Y", "Bogus_Field": 1}]})
        assert r.status_code == 207
        items = r.json()["data"]
        assert [i["status"] for i in items] == ["success", "error", "error", "error"]
        assert items[1]["code"] == "MANDATORY_NOT_FOUND"
        assert items[1]["details"] == {"api_name": "Last_Name", "json_path": "$.data[1].Last_Name"}
        assert items[2]["code"] == "INVALID_DATA"
        assert items[2]["details"]["api_name"] == "No_of_Employees"
        assert items[3]["details"]["api_name"] == "Bogus_Field"
        listed = api.get("/crm/v8/Leads").json()["data"]
        assert [x["Last_Name"] for x in listed] == ["Ok"]

    def test_all_failed_is_400_and_writes_nothing(self, api: httpx.Client) -> None:
        r = api.post("/crm/v8/Leads", json={"data": [{"Company": "a"}]})
        assert r.status_code == 400
        assert api.get("/crm/v8/Leads").status_code == 204
        assert api.get("/crmwatch/v1/changes").json()["changes"] == []

    def test_more_than_100_records(self, api: httpx.Client) -> None:
        r = api.post("/crm/v8/Leads", json={"data": [{"Last_Name": str(i)} for i in range(101)]})
        assert r.status_code == 400
        assert r.json()["code"] == "LIMIT_EXCEEDED"
        assert api.get("/crm/v8/Leads").status_code == 204

    def test_lookup_gets_the_target_name(self, api: httpx.Client) -> None:
        (acc,) = create(api, "Accounts", {"Account_Name": "Acme"})
        (con,) = create(api, "Contacts", {"Last_Name": "Lee", "Account_Name": {"id": acc}})
        got = api.get(f"/crm/v8/Contacts/{con}").json()["data"][0]
        assert got["Account_Name"] == {"name": "Acme", "id": acc}
        r = api.post("/crm/v8/Contacts", json={"data": [
            {"Last_Name": "Lee", "Account_Name": {"id": "1234567890123456789"}}]})
        assert r.status_code == 400
        assert r.json()["data"][0]["details"]["api_name"] == "Account_Name"

    def test_typed_values_round_trip(self, api: httpx.Client) -> None:
        (lid,) = create(api, "Leads", {
            "Last_Name": "T", "No_of_Employees": 12, "Annual_Revenue": 1234.5,
            "Email_Opt_Out": True, "Email": "t@example.com"})
        got = api.get(f"/crm/v8/Leads/{lid}").json()["data"][0]
        assert got["No_of_Employees"] == 12
        assert got["Annual_Revenue"] == 1234.5
        assert got["Email_Opt_Out"] is True
        assert got["Email"] == "t@example.com"
        assert got["Modified_Time"] == got["Created_Time"]


class TestUpdateDelete:
    """PUT updates only the given fields; DELETE moves records to the recycle bin."""

    def test_update_one_and_many(self, api: httpx.Client) -> None:
        a, b = create(api, "Leads", {"Last_Name": "A", "Company": "C1"},
                      {"Last_Name": "B", "Company": "C2"})
        r = api.put(f"/crm/v8/Leads/{a}", content=b'{"data": [{"Company": "New"}]}')
        assert r.status_code == 200 and r.json()["data"][0]["message"] == "record updated"
        assert api.get(f"/crm/v8/Leads/{a}").json()["data"][0]["Company"] == "New"
        assert api.get(f"/crm/v8/Leads/{a}").json()["data"][0]["Last_Name"] == "A"
        r = api.put("/crm/v8/Leads", json={"data": [
            {"id": b, "Company": "N2"}, {"Company": "x"},
            {"id": "1234567890123456789", "Company": "y"}]})
        assert r.status_code == 207
        items = r.json()["data"]
        assert items[0]["status"] == "success"
        assert items[1]["code"] == "MANDATORY_NOT_FOUND"
        assert items[2]["code"] == "INVALID_DATA"

    def test_delete_many_and_deleted_list(self, api: httpx.Client) -> None:
        a, b = create(api, "Leads", {"Last_Name": "A"}, {"Last_Name": "B"})
        r = api.delete("/crm/v8/Leads", params={"ids": f"{a},{b},notanid"})
        assert r.status_code == 207
        assert [i["status"] for i in r.json()["data"]] == ["success", "success", "error"]
        assert api.get("/crm/v8/Leads").status_code == 204
        again = api.delete(f"/crm/v8/Leads/{a}")
        assert again.status_code == 400
        assert again.json()["data"][0]["message"] == "record not deleted"
        deleted = api.get("/crm/v8/Leads/deleted").json()
        assert {d["id"] for d in deleted["data"]} == {a, b}
        assert deleted["data"][0]["type"] == "recycle"
        assert api.delete("/crm/v8/Leads").json()["code"] == "REQUIRED_PARAM_MISSING"

    def test_upsert(self, api: httpx.Client) -> None:
        r = api.post("/crm/v8/Leads/upsert", json={"data": [
            {"Last_Name": "U", "Email": "u@example.com", "Company": "one"}]})
        assert r.status_code == 201
        first = r.json()["data"][0]
        assert first["action"] == "insert"
        r = api.post("/crm/v8/Leads/upsert", json={
            "data": [{"Last_Name": "U", "Email": "U@example.com", "Company": "two"}],
            "duplicate_check_fields": ["Email"]})
        second = r.json()["data"][0]
        assert second["action"] == "update" and second["duplicate_field"] == "Email"
        assert second["details"]["id"] == first["details"]["id"]
        assert api.get(f"/crm/v8/Leads/{first['details']['id']}").json()["data"][0][
            "Company"] == "two"


class TestList:
    """GET lists pages with Zoho's info block, fields, sorting and If-Modified-Since."""

    def test_paging_info_and_sort(self, api: httpx.Client) -> None:
        ids = create(api, "Leads", *({"Last_Name": f"L{i}"} for i in range(5)))
        r = api.get("/crm/v2/Leads", params={"per_page": 2, "sort_order": "asc"})
        body = r.json()
        assert [d["id"] for d in body["data"]] == ids[:2]
        assert body["info"] == {"per_page": 2, "count": 2, "page": 1, "more_records": True}
        last = api.get("/crm/v2/Leads", params={"per_page": 2, "page": 3,
                                                "sort_order": "asc"}).json()
        assert [d["id"] for d in last["data"]] == ids[4:]
        assert last["info"]["more_records"] is False
        desc = api.get("/crm/v8/Leads", params={"fields": "Last_Name"}).json()
        assert [d["id"] for d in desc["data"]] == ids[::-1]
        assert set(desc["data"][0]) == {"id", "Last_Name"}
        assert desc["info"]["next_page_token"] is None

    def test_page_tokens_pass_the_discrete_limit(self, live: Live) -> None:
        from tests.conftest import start_server

        server = start_server(live.database_url, org="other", discrete_page_limit=4)
        try:
            with server.http() as api:
                ids = create(api, "Leads", *({"Last_Name": f"L{i}"} for i in range(7)))
                r = api.get("/crm/v8/Leads", params={"per_page": 2, "page": 3})
                assert r.status_code == 400
                assert r.json()["code"] == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"
                assert r.json()["details"] == {"limit": 4}
                seen: list[str] = []
                params: dict[str, Any] = {"per_page": 2, "sort_order": "asc"}
                while True:
                    body = api.get("/crm/v8/Leads", params=params).json()
                    seen += [d["id"] for d in body["data"]]
                    if not body["info"]["more_records"]:
                        break
                    params = {"per_page": 2, "sort_order": "asc",
                              "page_token": body["info"]["next_page_token"]}
                assert seen == ids
                bad = api.get("/crm/v8/Leads", params={"page_token": "garbage!!", "per_page": 2})
                assert bad.status_code == 400
                mismatch = api.get("/crm/v8/Leads", params={
                    "per_page": 2, "sort_order": "desc",
                    "page_token": api.get("/crm/v8/Leads", params={
                        "per_page": 2, "sort_order": "asc"}).json()["info"]["next_page_token"]})
                assert mismatch.json()["code"] == "TOKEN_BOUND_DATA_MISMATCH"
        finally:
            server.stop()

    def test_page_tokens_stop_at_their_limit(self, live: Live) -> None:
        from tests.conftest import start_server

        server = start_server(live.database_url, org="other", page_token_record_limit=4)
        try:
            with server.http() as api:
                ids = create(api, "Leads", *({"Last_Name": f"L{i}"} for i in range(7)))
                params: dict[str, Any] = {"per_page": 2, "sort_order": "asc"}
                seen: list[str] = []
                for _ in range(2):
                    body = api.get("/crm/v8/Leads", params=params).json()
                    seen += [d["id"] for d in body["data"]]
                    assert body["info"]["more_records"] is True
                    params = {**params, "page_token": body["info"]["next_page_token"]}
                assert seen == ids[:4]
                r = api.get("/crm/v8/Leads", params=params)  # records 5.. are past the limit
                assert r.status_code == 400, r.text
                assert r.json() == {"code": "PAGINATION_LIMIT_EXCEEDED",
                                    "details": {"limit": 4}, "message": r.json()["message"],
                                    "status": "error"}
        finally:
            server.stop()

    def test_if_modified_since_is_iso_and_inclusive(self, api: httpx.Client) -> None:
        (lid,) = create(api, "Leads", {"Last_Name": "M"})
        modified = api.get(f"/crm/v8/Leads/{lid}").json()["data"][0]["Modified_Time"]
        r = api.get("/crm/v2/Leads", headers={"If-Modified-Since": modified})
        assert [d["id"] for d in r.json()["data"]] == [lid]
        r = api.get("/crm/v2/Leads", headers={"If-Modified-Since": "2999-01-01T00:00:00+05:30"})
        assert r.status_code == 204
        r = api.get("/crm/v2/Leads", headers={"If-Modified-Since": "Tue, 01 Jan 2024 00:00:00 GMT"})
        assert r.status_code == 400 and r.json()["code"] == "INVALID_DATA"

    def test_bad_parameters(self, api: httpx.Client) -> None:
        cases = [({"per_page": 201}, "INVALID_DATA"), ({"page": "x"}, "INVALID_DATA"),
                 ({"fields": "Nope"}, "INVALID_DATA"), ({"sort_by": "Company"}, "INVALID_DATA"),
                 ({"fields": ",".join(["Last_Name"] * 51)}, "LIMIT_EXCEEDED"),
                 ({"page": 1, "page_token": "x"}, "AMBIGUITY_DURING_PROCESSING")]
        for params, code in cases:
            r = api.get("/crm/v8/Leads", params=params)
            assert r.status_code == 400, params
            assert r.json()["code"] == code, params

    def test_ids_filter(self, api: httpx.Client) -> None:
        a, _b, c = create(api, "Leads", *({"Last_Name": f"L{i}"} for i in range(3)))
        r = api.get("/crm/v8/Leads", params={"ids": f"{a},{c}"})
        assert {d["id"] for d in r.json()["data"]} == {a, c}


class TestSearch:
    """GET /search with criteria, email, phone or word."""

    def test_criteria_email_word(self, api: httpx.Client) -> None:
        a, b, _c = create(api, "Leads", {"Last_Name": "Burns", "First_Name": "Bob",
                                         "Email": "bob@example.com"},
                          {"Last_Name": "Burns", "First_Name": "Al"},
                          {"Last_Name": "Smith", "Company": "Burnside"})
        r = api.get("/crm/v8/Leads/search",
                    params={"criteria": "((Last_Name:equals:Burns)and(First_Name:starts_with:B))"})
        assert [d["id"] for d in r.json()["data"]] == [a]
        r = api.get("/crm/v8/Leads/search", params={"email": "BOB@example.com"})
        assert [d["id"] for d in r.json()["data"]] == [a]
        r = api.get("/crm/v8/Leads/search", params={"word": "burns"})
        assert len(r.json()["data"]) == 3
        r = api.get("/crm/v8/Leads/search", params={"criteria": "(Last_Name:equals:Nobody)"})
        assert r.status_code == 204
        assert b

    def test_bad_criteria(self, api: httpx.Client) -> None:
        for crit in ["(Last_Name:equals", "(Nope:equals:x)", "(No_of_Employees:starts_with:1)"]:
            r = api.get("/crm/v8/Leads/search", params={"criteria": crit})
            assert r.status_code == 400, crit
            assert r.json()["status"] == "error"
        r = api.get("/crm/v8/Leads/search")
        assert r.json()["code"] == "REQUIRED_PARAM_MISSING"


class TestSubforms:
    """Subform rows are written through the parent and are records of their own module."""

    def test_rows_created_replaced_and_deleted_with_parent(self, api: httpx.Client) -> None:
        (p1, p2) = create(api, "Products", {"Product_Name": "P1"}, {"Product_Name": "P2"})
        (q,) = create(api, "Quotes", {"Subject": "Q", "Quoted_Items": [
            {"Product_Name": {"id": p1}, "Quantity": 2}, {"Product_Name": {"id": p2}}]})
        rows = api.get(f"/crm/v8/Quotes/{q}").json()["data"][0]["Quoted_Items"]
        assert [r["Product_Name"]["name"] for r in rows] == ["P1", "P2"]
        assert rows[0]["Parent_Id"]["id"] == q
        listed = api.get("/crm/v8/Quoted_Items").json()["data"]
        assert len(listed) == 2
        r = api.put(f"/crm/v8/Quotes/{q}", json={"data": [{"Quoted_Items": [
            {"id": rows[0]["id"], "Quantity": 5}]}]})
        assert r.status_code == 200, r.text
        rows2 = api.get(f"/crm/v8/Quotes/{q}").json()["data"][0]["Quoted_Items"]
        assert [(x["id"], x["Quantity"]) for x in rows2] == [(rows[0]["id"], 5.0)]
        api.delete(f"/crm/v8/Quotes/{q}")
        assert api.get("/crm/v8/Quoted_Items").status_code == 204
        ops = [(c["module"], c["operation"]) for c in
               api.get("/crmwatch/v1/changes", params={"limit": 100}).json()["changes"]]
        assert ops.count(("Quoted_Items", "insert")) == 2
        assert ops.count(("Quoted_Items", "update")) == 1
        assert ops.count(("Quoted_Items", "delete")) == 2

    def test_direct_write_to_subform_module_is_refused(self, api: httpx.Client) -> None:
        r = api.post("/crm/v8/Quoted_Items", json={"data": [{"Quantity": 1}]})
        assert r.status_code == 400 and r.json()["code"] == "INVALID_MODULE"
