"""Payloads: Zoho's callback body, query_params, affected fields and values."""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st

from crmwatch.domain.channels import OPERATIONS, Channel
from crmwatch.domain.clock import zone
from crmwatch.domain.matching import Affected, Notification
from crmwatch.domain.payloads import build_body, query_params, without_values
from tests.strategies import MODULES, NOW

UTC = zone("UTC")
KOLKATA = zone("Asia/Kolkata")
BASE = "https://crm.example.test"
CHANNEL = Channel(
    channel_id="4100000000000001", notify_url="https://hooks.example.test/zoho?tenant=acme&env=dev",
    token="acme-leads-deals-01", expiry_ms=NOW + 3_600_000, return_affected_field_values=True,
    notify_on_related_action=True, events={"Leads": frozenset(OPERATIONS)}, conditions={},
    fields=None, created_ms=NOW, updated_ms=NOW)
UPDATE = Notification(
    channel_id="4100000000000001", module="Leads", operation="update",
    ids=("4100000000000201", "4100000000000202"),
    affected=(Affected("4100000000000201", ("Company",), {"Company": "Northwind"}),
              Affected("4100000000000202", ("Company", "Phone"),
                       {"Company": "Contoso", "Phone": "555-0100"})),
    first_seq=1, last_seq=2)


class TestBody:
    """The body has Zoho's keys and types."""

    def test_spec_example(self) -> None:
        body = build_body(UPDATE, CHANNEL, BASE, 1763888685123, tz=UTC, module=MODULES["Leads"])
        assert body == {
            "server_time": 1763888685123,
            "module": "Leads",
            "resource_uri": "https://crm.example.test/crm/v2/Leads",
            "ids": ["4100000000000201", "4100000000000202"],
            "operation": "update",
            "channel_id": "4100000000000001",
            "token": "acme-leads-deals-01",
            "query_params": {"tenant": "acme", "env": "dev"},
            "affected_fields": [{"4100000000000201": ["Company"]},
                                {"4100000000000202": ["Company", "Phone"]}],
            "affected_values": [
                {"record_id": "4100000000000201", "values": {"Company": "Northwind"}},
                {"record_id": "4100000000000202",
                 "values": {"Company": "Contoso", "Phone": "555-0100"}}],
        }

    def test_resource_uri_says_v2_and_trims_the_base(self) -> None:
        body = build_body(UPDATE, CHANNEL, "http://127.0.0.1:8000/", 1, tz=UTC)
        assert body["resource_uri"] == "http://127.0.0.1:8000/crm/v2/Leads"

    def test_null_token_and_no_query(self) -> None:
        ch = replace(CHANNEL, token=None, notify_url="http://127.0.0.1:9/hook")
        body = build_body(UPDATE, ch, BASE, 1, tz=UTC)
        assert body["token"] is None and body["query_params"] == {}

    def test_affected_only_when_asked(self) -> None:
        n = replace(UPDATE, affected=None)
        body = build_body(n, CHANNEL, BASE, 1, tz=UTC)
        assert "affected_fields" not in body and "affected_values" not in body
        assert list(body) == ["server_time", "module", "resource_uri", "ids", "operation",
                              "channel_id", "token", "query_params"]

    def test_related_notification_has_empty_lists(self) -> None:
        n = Notification("4100000000000001", "Accounts", "update", ("7",), (), 3, 3,
                         related=True)
        body = build_body(n, CHANNEL, BASE, 1, tz=UTC)
        assert body["affected_fields"] == [] and body["affected_values"] == []
        assert body["module"] == "Accounts" and body["ids"] == ["7"]


class TestValues:
    """Stored values as the API shows them: zone-local date-times, lookups as objects."""

    def one(self, fields: tuple[str, ...], values: dict[str, object],
            with_module: bool = True) -> tuple[list[object], list[object]]:
        n = replace(UPDATE, ids=("1",), affected=(Affected("1", fields, values),))
        body = build_body(n, CHANNEL, BASE, 1, tz=KOLKATA,
                          module=MODULES["Leads"] if with_module else None)
        return body["affected_fields"], body["affected_values"]

    def test_datetimes_in_the_org_zone(self) -> None:
        _, values = self.one(("Met_At",), {"Met_At": "2025-11-23T08:00:00+00:00"})
        assert values == [{"record_id": "1", "values": {"Met_At": "2025-11-23T13:30:00+05:30"}}]

    def test_text_that_looks_like_a_datetime_stays_with_a_module(self) -> None:
        _, values = self.one(("Company",), {"Company": "2025-11-23T08:00:00+00:00"})
        assert values[0] == {"record_id": "1",
                             "values": {"Company": "2025-11-23T08:00:00+00:00"}}

    def test_without_a_module_datetimes_go_by_shape(self) -> None:
        _, values = self.one(("Met_At", "Company"), {"Met_At": "2025-11-23T08:00:00+00:00",
                                                     "Company": "Acme"}, with_module=False)
        assert values[0] == {"record_id": "1", "values": {
            "Met_At": "2025-11-23T13:30:00+05:30", "Company": "Acme"}}

    def test_lookups_and_numbers_as_stored(self) -> None:
        owner = {"name": "Ann", "id": "5", "email": "ann@example.test"}
        fields, values = self.one(("Modified_By", "Rating", "Account"),
                                  {"Modified_By": owner, "Rating": 4, "Account": None})
        assert fields == [{"1": ["Modified_By", "Rating", "Account"]}]
        assert values[0] == {"record_id": "1", "values": {"Modified_By": owner, "Rating": 4,
                                                           "Account": None}}

    def test_subform_fields_left_out(self) -> None:
        fields, values = self.one(("Company", "Items"), {"Company": "A", "Items": [{"id": "9"}]})
        assert fields == [{"1": ["Company"]}]
        assert values == [{"record_id": "1", "values": {"Company": "A"}}]

    def test_delete_body(self) -> None:
        """AMP's real delete: Modified_By and Record_Status__s in both arrays."""
        n = Notification("4100000000000001", "Leads", "delete", ("1",), (Affected(
            "1", ("Modified_By", "Record_Status__s"),
            {"Modified_By": {"name": "A", "id": "5"}, "Record_Status__s": 0}),), 1, 1)
        body = build_body(n, CHANNEL, BASE, 1, tz=UTC, module=MODULES["Leads"])
        assert body["affected_fields"] == [{"1": ["Modified_By", "Record_Status__s"]}]
        assert body["affected_values"][0]["values"]["Record_Status__s"] == 0


class TestQueryParams:
    """The notify_url's query string as a map with clean, decoded keys."""

    def test_decoded(self) -> None:
        url = "https://h.example/cb?authorization=Zoho-oauthtoken 1000.x&key1=val1&k%20y=a%2Bb+c"
        assert query_params(url) == {"authorization": "Zoho-oauthtoken 1000.x",
                                     "key1": "val1", "k y": "a+b c"}

    def test_repeated_key_last_wins_and_blanks_kept(self) -> None:
        assert query_params("http://h/?a=1&a=2&b=&c") == {"a": "2", "b": "", "c": ""}

    def test_fragment_ignored(self) -> None:
        assert query_params("http://h/p?x=1#y=2") == {"x": "1"}

    def test_zoho_quirk(self) -> None:
        url = "https://www.zoho.com/callback?authorization=Zoho-oauthtoken 1000.x&key1=val1"
        assert query_params(url, zoho_quirk=True) == {
            "?authorization": "Zoho-oauthtoken 1000.x", "key1": "val1"}
        assert query_params("http://h/", zoho_quirk=True) == {}

    @given(st.dictionaries(st.text(min_size=1), st.text()))
    def test_round_trip(self, params: dict[str, str]) -> None:
        assert query_params("http://h.example/x?" + urlencode(params)) == params


class TestWithoutValues:
    """The delivery log's view of a body for callers who may not read the module."""

    def test_values_emptied_rest_kept(self) -> None:
        body = {"ids": ["1", "2"], "operation": "update", "token": None,
                "affected_fields": [{"1": ["Company"]}],
                "affected_values": [{"record_id": "1", "values": {"Company": "Ünïcode Co"}},
                                    {"record_id": "2", "values": {}}]}
        shown = json.loads(without_values(json.dumps(body)))
        assert shown == {**body, "affected_values": [{"record_id": "1", "values": {}},
                                                     {"record_id": "2", "values": {}}]}
        plain = {"ids": ["1"], "operation": "insert"}
        assert json.loads(without_values(json.dumps(plain))) == plain
        assert without_values("") == "" and without_values("[1]") == ""
