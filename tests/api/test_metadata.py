"""Users, org, module and field metadata carry every key real clients read."""

from __future__ import annotations

import httpx

AIRBYTE_FIELD_KEYS = {"api_name", "json_type", "data_type", "length", "decimal_place",
                      "system_mandatory", "display_label", "pick_list_values"}
JSON_TYPES = {"string", "integer", "double", "boolean", "jsonarray", "jsonobject"}
REQUIRED_MODULES = {"Leads", "Contacts", "Accounts", "Deals", "Tasks", "Events", "Calls",
                    "Products", "Price_Books", "Solutions", "Sales_Orders", "Purchase_Orders",
                    "Quotes", "Invoices", "Vendors", "Campaigns", "Cases"}


class TestStartupCalls:
    """The calls SDK initialisation and Airbyte make before anything else."""

    def test_current_user_and_org(self, api: httpx.Client) -> None:
        users = api.get("/crm/v8/users", params={"type": "CurrentUser"}).json()
        assert users["users"][0]["email"]
        org = api.get("/crm/v2/org").json()["org"][0]
        assert org["zgid"].isdigit()
        assert org["license_details"]["paid_type"] == "Enterprise"
        assert org["time_zone"] == "America/Los_Angeles"


class TestModules:
    """`/settings/modules` lists Zoho's standard modules with Airbyte's keys."""

    def test_standard_modules(self, api: httpx.Client) -> None:
        modules = api.get("/crm/v2/settings/modules").json()["modules"]
        names = {m["api_name"] for m in modules}
        assert names >= REQUIRED_MODULES
        for m in modules:
            assert {"api_name", "module_name", "api_supported", "id"} <= set(m)
            assert m["api_supported"] is True
        events = next(m for m in modules if m["api_name"] == "Events")
        assert events["module_name"] == "Meetings"

    def test_one_module_and_unknown(self, api: httpx.Client) -> None:
        one = api.get("/crm/v8/settings/modules/Deals").json()["modules"]
        assert len(one) == 1 and one[0]["api_name"] == "Deals"
        r = api.get("/crm/v8/settings/modules/Nope")
        assert r.status_code == 400 and r.json()["code"] == "INVALID_MODULE"


class TestFields:
    """`/settings/fields?module=X`: every field carries what SDKs and Airbyte read."""

    def test_every_module_has_complete_field_metadata(self, api: httpx.Client) -> None:
        modules = api.get("/crm/v8/settings/modules").json()["modules"]
        for m in modules:
            fields = api.get("/crm/v8/settings/fields",
                             params={"module": m["api_name"]}).json()["fields"]
            names = {f["api_name"] for f in fields}
            assert "Modified_Time" in names, m["api_name"]
            for f in fields:
                assert set(f) >= AIRBYTE_FIELD_KEYS, (m["api_name"], f["api_name"])
                assert f["json_type"] in JSON_TYPES
                assert {"custom_field", "id", "field_label"} <= set(f)
                for p in f["pick_list_values"]:
                    assert {"display_value", "actual_value"} <= set(p)
                if f["data_type"] == "lookup":
                    assert f["lookup"]["module"]["api_name"] in {x["api_name"] for x in modules}

    def test_leads_core_fields(self, api: httpx.Client) -> None:
        fields = {f["api_name"]: f for f in api.get(
            "/crm/v8/settings/fields", params={"module": "Leads"}).json()["fields"]}
        assert fields["Last_Name"]["system_mandatory"] is True
        for name in ("Last_Name", "Company", "Email"):
            assert fields[name]["json_type"] == "string"
        assert fields["Email"]["data_type"] == "email"

    def test_contacts_account_lookup(self, api: httpx.Client) -> None:
        fields = {f["api_name"]: f for f in api.get(
            "/crm/v8/settings/fields", params={"module": "Contacts"}).json()["fields"]}
        assert fields["Account_Name"]["lookup"]["module"]["api_name"] == "Accounts"

    def test_errors(self, api: httpx.Client) -> None:
        r = api.get("/crm/v8/settings/fields")
        assert r.status_code == 400 and r.json()["code"] == "REQUIRED_PARAM_MISSING"
        r = api.get("/crm/v8/settings/fields", params={"module": "Nope"})
        assert r.json()["code"] == "INVALID_MODULE"
        r = api.get("/crm/v99/settings/fields", params={"module": "Leads"})
        assert r.status_code == 404 and r.json()["code"] == "INVALID_URL_PATTERN"
