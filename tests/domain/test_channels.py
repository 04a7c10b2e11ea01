"""Channels: request parsing per method and version, the expiry rule, apply, and rendering."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmwatch.domain import channels as ch
from crmwatch.domain.channels import (
    Channel,
    ChannelInput,
    FieldGroup,
    FieldRef,
    Method,
    apply,
    effective_expiry,
    parse_request,
)
from crmwatch.domain.clock import format_ms, zone
from crmwatch.domain.errors import (
    Ambiguity,
    DependentFieldMissing,
    ExpectedFieldMissing,
    InvalidData,
    LimitExceeded,
    MandatoryNotFound,
    NotSubscribed,
    RequiredParamMissing,
    ZohoError,
)
from crmwatch.domain.versions import ApiVersion, parse_version
from tests.strategies import MODULES, NOW, channels


def version(name: str) -> ApiVersion:
    v = parse_version(name)
    assert v is not None
    return v


V2, V5, V8 = version("v2"), version("v5"), version("v8")
UTC = zone("UTC")
HOUR = 3_600_000
URL = "http://127.0.0.1:44635/zoho/notify?key1=val1&key2=val2"
BASE = "http://127.0.0.1:8000"


def parse(item: dict[str, Any], method: Method = "enable", version: ApiVersion = V8,
          now: int = NOW) -> ChannelInput | ZohoError:
    (result,) = parse_request({"watch": [item]}, method, version, MODULES, now)
    return result


def ok(item: dict[str, Any], method: Method = "enable", version: ApiVersion = V8,
       now: int = NOW) -> ChannelInput:
    result = parse(item, method, version, now)
    assert isinstance(result, ChannelInput), result.to_json()
    return result


def err(item: dict[str, Any], method: Method = "enable", version: ApiVersion = V8,
        now: int = NOW) -> ZohoError:
    result = parse(item, method, version, now)
    assert isinstance(result, ZohoError), result
    return result


def item(**extra: Any) -> dict[str, Any]:
    return {"channel_id": "9017165751624", "events": ["Leads.create", "Leads.edit"],
            "notify_url": URL, **extra}


def condition(selection: Any, module: Any = None, **extra: Any) -> dict[str, Any]:
    return {"type": "field_selection", "module": module or {"api_name": "Leads"},
            "field_selection": selection, **extra}


def field(name: str) -> dict[str, Any]:
    return {"field": {"api_name": name}}


def new_channel(**body: Any) -> Channel:
    created = apply(None, ok(item(**body)), NOW)
    assert created is not None
    return created


class TestRequestShape:
    """Request-level problems raise; every item yields one result in order."""

    def test_body_must_be_an_object(self) -> None:
        body: object
        for body in (None, [], "x", 3):
            with pytest.raises(InvalidData) as exc:
                parse_request(body, "enable", V8, MODULES, NOW)
            assert exc.value.details == {"expected_data_type": "jsonobject"}

    def test_watch_is_required(self) -> None:
        with pytest.raises(RequiredParamMissing) as exc:
            parse_request({"data": []}, "enable", V8, MODULES, NOW)
        assert exc.value.details == {"param_name": "watch"}

    def test_watch_must_be_a_non_empty_array(self) -> None:
        watch: object
        for watch in ({}, "x", []):
            with pytest.raises(InvalidData):
                parse_request({"watch": watch}, "enable", V8, MODULES, NOW)

    def test_at_most_100_channels(self) -> None:
        items = [item(channel_id=str(i)) for i in range(100)]
        assert len(parse_request({"watch": items}, "enable", V8, MODULES, NOW)) == 100
        with pytest.raises(LimitExceeded) as exc:
            parse_request({"watch": [*items, item()]}, "enable", V8, MODULES, NOW)
        assert exc.value.details["limit"] == 100

    def test_one_result_per_item_in_order(self) -> None:
        results = parse_request({"watch": [item(), 5, item(channel_id="x"), item()]},
                                "enable", V8, MODULES, NOW)
        assert [type(r).__name__ for r in results] == ["ChannelInput", "InvalidData",
                                                       "InvalidData", "ChannelInput"]
        assert results[1].to_json()["details"] == {  # type: ignore[union-attr]
            "json_path": "$.watch[1]", "expected_data_type": "jsonobject"}
        assert [r.index for r in results if isinstance(r, ChannelInput)] == [0, 3]


class TestMandatory:
    """Each method has its mandatory keys; a null counts as missing."""

    @pytest.mark.parametrize("method", ["enable", "replace"])
    @pytest.mark.parametrize("key", ["channel_id", "events", "notify_url"])
    def test_post_and_put(self, method: Method, key: str) -> None:
        body = item()
        del body[key]
        for raw in (body, {**body, key: None}):
            e = err(raw, method)
            assert isinstance(e, MandatoryNotFound)
            assert e.to_json() == {"code": "MANDATORY_NOT_FOUND", "status": "error",
                                   "message": "required field not found",
                                   "details": {"api_name": key,
                                               "json_path": f"$.watch[0].{key}"}}

    def test_merge_needs_only_the_channel_id(self) -> None:
        inp = ok({"channel_id": "7", "token": "t"}, "merge")
        assert inp.method == "merge" and inp.events is None and inp.notify_url is None
        assert inp.expiry_ms is None
        assert isinstance(err({"token": "t"}, "merge"), MandatoryNotFound)

    def test_delete_events_turns_a_patch_into_a_removal(self) -> None:
        for method in ("merge", "remove_events"):
            raw = {"_delete_events": True, "channel_id": "7", "events": ["Leads.edit"]}
            assert ok(raw, method).method == "remove_events"
            assert ok({**raw, "_delete_events": False}, method).method == "merge"
            assert ok({"channel_id": "7", "events": ["Leads.edit"]},
                      method).method == "merge"

    def test_a_removal_needs_events(self) -> None:
        e = err({"_delete_events": True, "channel_id": "7"}, "merge")
        assert isinstance(e, MandatoryNotFound) and e.details["api_name"] == "events"

    def test_delete_events_must_be_a_boolean(self) -> None:
        e = err({"_delete_events": "true", "channel_id": "7", "events": ["Leads.edit"]},
                "merge")
        assert e.details == {"api_name": "_delete_events", "json_path": "$.watch[0]._delete_events",
                             "expected_data_type": "boolean"}

    def test_delete_events_true_is_refused_on_post_and_put(self) -> None:
        for method in ("enable", "replace"):
            e = err(item(_delete_events=True), method)
            assert isinstance(e, InvalidData) and e.details["api_name"] == "_delete_events"
        assert ok(item(_delete_events=False)).method == "enable"


class TestChannelId:
    """A JSON string of digits (v6/v8 SDKs) or a JSON integer (v2 SDK), stored as a string."""

    def test_string_and_number_are_the_same_channel(self) -> None:
        assert ok(item(channel_id="1000000068001")).channel_id == "1000000068001"
        assert ok(item(channel_id=1000000068001)).channel_id == "1000000068001"

    def test_canonical_decimal_form(self) -> None:
        assert ok(item(channel_id="000123")).channel_id == "123"
        assert ok(item(channel_id="0")).channel_id == "0"

    def test_largest_long(self) -> None:
        assert ok(item(channel_id=str(2**63 - 1))).channel_id == str(2**63 - 1)

    @pytest.mark.parametrize("value", [True, False, 1.0, 12.5, -1, 2**63, str(2**63), "",
                                       "12a", " 12", "-5", "１２", "1" * 20, [1], {"id": 1}])
    def test_invalid(self, value: object) -> None:
        e = err(item(channel_id=value))
        assert isinstance(e, InvalidData)
        assert e.details == {"api_name": "channel_id", "json_path": "$.watch[0].channel_id",
                             "expected_data_type": "long"}

    @given(st.integers(min_value=0, max_value=2**63 - 1))
    def test_any_long_round_trips(self, n: int) -> None:
        assert ch.normalise_channel_id(n) == str(n)
        assert ch.normalise_channel_id(str(n)) == str(n)
        assert ch.normalise_channel_id(str(n).zfill(19)) == str(n)


class TestChannelIdsParam:
    """`DELETE ?channel_ids=a,b` parses to canonical ids without repeats."""

    def test_list(self) -> None:
        assert ch.parse_channel_ids("5, 007,5,,9") == ["5", "7", "9"]

    def test_missing(self) -> None:
        for text in (None, "", " , "):
            with pytest.raises(RequiredParamMissing) as exc:
                ch.parse_channel_ids(text)
            assert exc.value.details == {"param_name": "channel_ids"}

    def test_invalid(self) -> None:
        with pytest.raises(InvalidData) as exc:
            ch.parse_channel_ids("5,x")
        assert exc.value.details["param_name"] == "channel_ids"


class TestEvents:
    """`Module.op` with create/edit/delete/all, modules matched case-insensitively."""

    def test_expanded_per_module(self) -> None:
        inp = ok(item(events=["Leads.create", "Deals.all", "leads.DELETE"]))
        assert inp.events == {"Leads": frozenset({"create", "delete"}),
                              "Deals": frozenset({"create", "edit", "delete"})}
        assert list(inp.events) == ["Leads", "Deals"]

    def test_canonical_module_names(self) -> None:
        assert ok(item(events=["lead_items.all"])).events == {
            "Lead_Items": frozenset(ch.OPERATIONS)}

    def test_insert_and_update_are_aliases(self) -> None:
        assert ok(item(events=["Leads.insert", "Leads.update"])).events == {
            "Leads": frozenset({"create", "edit"})}

    @pytest.mark.parametrize("text", ["Users.all", "Leads.modify", "Leads", ".create",
                                      "Leads.", "Leads.create.x", ""])
    def test_unknown_module_or_operation(self, text: str) -> None:
        e = err(item(events=["Deals.create", text]))
        assert isinstance(e, InvalidData)
        assert e.details["api_name"] == "events"
        assert e.details["json_path"] == "$.watch[0].events[1]"

    @given(st.lists(st.tuples(st.sampled_from(["Leads", "leads", "DEALS", "Lead_Items"]),
                              st.sampled_from(["create", "edit", "delete", "all", "Insert"])),
                    min_size=1, max_size=8))
    def test_union_of_what_was_asked(self, pairs: list[tuple[str, str]]) -> None:
        expected: dict[str, set[str]] = {}
        for module, op in pairs:
            name = ch.resolve_module(module, MODULES)
            assert name is not None
            expected.setdefault(name.api_name, set()).update(ch.OP_ALIASES[op.lower()])
        got = ok(item(events=[f"{m}.{op}" for m, op in pairs])).events
        assert got == {m: frozenset(ops) for m, ops in expected.items()}

    def test_not_strings(self) -> None:
        e = err(item(events=[{"module": "Leads"}]))
        assert e.details["expected_data_type"] == "string"

    def test_not_an_array_or_empty(self) -> None:
        assert err(item(events="Leads.all")).details["expected_data_type"] == "jsonarray"
        assert err(item(events=[])).details == {"api_name": "events",
                                                "json_path": "$.watch[0].events"}


class TestNotifyUrl:
    """An absolute http(s) URL with a host; its query string is kept."""

    @pytest.mark.parametrize("url", [URL, "https://hooks.example.test/zoho?tenant=acme&env=dev",
                                     "HTTP://[::1]:8080/x",
                                     "https://www.zoho.com/cb?authorization=Zoho-oauthtoken "
                                     "1000.x&key1=val1"])
    def test_accepted(self, url: str) -> None:
        assert ok(item(notify_url=url)).notify_url == url

    @pytest.mark.parametrize("url", ["ftp://h/x", "/relative", "h.example/x", "http://",
                                     "http:///path", "http://h:port/", "http://[::1/",
                                     "mailto:a@b.c", "http://a b/", ""])
    def test_refused(self, url: str) -> None:
        e = err(item(notify_url=url))
        assert isinstance(e, InvalidData)
        assert e.details == {"api_name": "notify_url", "json_path": "$.watch[0].notify_url"}

    def test_not_a_string(self) -> None:
        assert err(item(notify_url=5)).details["expected_data_type"] == "string"


class TestToken:
    """At most 50 characters, a string."""

    def test_fifty(self) -> None:
        assert ok(item(token="t" * 50)).token == "t" * 50

    def test_fifty_one(self) -> None:
        assert err(item(token="t" * 51)).to_json() == {
            "code": "INVALID_DATA", "status": "error", "message": "invalid data",
            "details": {"api_name": "token", "json_path": "$.watch[0].token",
                        "maximum_length": 50}}

    def test_not_a_string(self) -> None:
        assert err(item(token=5)).details["expected_data_type"] == "string"


class TestFlags:
    """Booleans must be JSON booleans; `return_affected_values` is an input alias."""

    @pytest.mark.parametrize("key", ["return_affected_field_values", "notify_on_related_action"])
    def test_real_booleans_only(self, key: str) -> None:
        assert getattr(ok(item(**{key: False})), key) is False
        for value in ("true", 1, 0):
            e = err(item(**{key: value}))
            assert e.details == {"api_name": key, "json_path": f"$.watch[0].{key}",
                                 "expected_data_type": "boolean"}

    def test_alias(self) -> None:
        assert ok(item(return_affected_values=True)).return_affected_field_values is True
        canonical_wins = item(return_affected_values=True, return_affected_field_values=False)
        assert ok(canonical_wins).return_affected_field_values is False

    def test_absent_is_none(self) -> None:
        inp = ok(item())
        assert inp.return_affected_field_values is None
        assert inp.notify_on_related_action is None


class TestKeysPerVersion:
    """Unknown keys are INVALID_DATA; notification_condition only from v6; echoes ignored."""

    def test_unknown_key(self) -> None:
        e = err(item(colour="red"))
        assert e.details == {"api_name": "colour", "json_path": "$.watch[0].colour"}

    def test_echoed_resource_keys_are_ignored(self) -> None:
        assert ok(item(resource_uri="x", resource_id="1", resource_name="Leads")).channel_id

    @pytest.mark.parametrize("name", ["v2", "v2.1", "v3", "v4", "v5"])
    def test_condition_refused_before_v6(self, name: str) -> None:
        e = err(item(notification_condition=[condition(field("Company"))]),
                version=version(name))
        assert isinstance(e, InvalidData)
        assert e.details == {"api_name": "notification_condition",
                             "json_path": "$.watch[0].notification_condition"}

    @pytest.mark.parametrize("name", ["v6", "v7", "v8"])
    def test_condition_accepted_from_v6(self, name: str) -> None:
        inp = ok(item(notification_condition=[condition(field("Company"))]),
                version=version(name))
        assert inp.conditions == {"Leads": FieldRef("Company", 502)}

    def test_fields_kept_opaque(self) -> None:
        assert ok(item(fields={"Leads": ["Company"]})).fields == {"Leads": ["Company"]}
        assert ok(item(fields=["Company"])).fields == ["Company"]
        assert err(item(fields="Company")).details["api_name"] == "fields"


class TestExpiry:
    """Absent or beyond the version's maximum: now + 1 h; in the past: INVALID_DATA."""

    def test_rule(self) -> None:
        week = timedelta(weeks=1)
        default = (NOW + HOUR) // 1000 * 1000
        assert effective_expiry(None, NOW, week) == default
        assert effective_expiry(NOW + 5000, NOW, week) == NOW + 5000
        assert effective_expiry(NOW + 5999, NOW, week) == NOW + 5000  # seconds precision
        assert effective_expiry(NOW + 7 * 24 * HOUR, NOW, week) == NOW + 7 * 24 * HOUR
        assert effective_expiry(NOW + 7 * 24 * HOUR + 1000, NOW, week) == default
        for past in (NOW, NOW - 1, NOW + 999):  # NOW is a whole second
            with pytest.raises(ValueError):
                effective_expiry(past, NOW, week)

    @given(st.integers(min_value=NOW + 1000, max_value=NOW + 10 * 24 * HOUR))
    def test_never_beyond_the_maximum(self, requested: int) -> None:
        got = effective_expiry(requested, NOW, timedelta(days=1))
        assert NOW < got <= NOW + 24 * HOUR
        assert got % 1000 == 0

    def test_absent_is_one_hour_on_post_and_put(self) -> None:
        for method in ("enable", "replace"):
            assert ok(item(), method).expiry_ms == (NOW + HOUR) // 1000 * 1000

    def test_absent_on_merge_stays_absent(self) -> None:
        assert ok({"channel_id": "1"}, "merge").expiry_ms is None

    def test_offsets(self) -> None:
        at = ok(item(channel_expiry="2025-11-23T15:23:20+05:30")).expiry_ms
        assert at == NOW + HOUR
        at = ok(item(channel_expiry="2025-11-23T09:53:20Z")).expiry_ms
        assert at == NOW + HOUR
        same = ok(item(channel_expiry="2025-11-23T01:53:20.750-08:00")).expiry_ms
        assert same == NOW + HOUR

    def test_one_day_on_v2_one_week_on_v8(self) -> None:
        two_days = format_ms(NOW + 48 * HOUR, UTC)
        assert ok(item(channel_expiry=two_days), version=V8).expiry_ms == NOW + 48 * HOUR
        assert ok(item(channel_expiry=two_days), version=V2).expiry_ms == NOW + HOUR
        assert ok(item(channel_expiry=two_days), version=V5).expiry_ms == NOW + 48 * HOUR

    def test_maximum_override(self) -> None:
        two_days = format_ms(NOW + 48 * HOUR, UTC)
        (inp,) = parse_request({"watch": [item(channel_expiry=two_days)]}, "enable", V2,
                               MODULES, NOW, max_expiry=timedelta(weeks=1))
        assert isinstance(inp, ChannelInput) and inp.expiry_ms == NOW + 48 * HOUR

    def test_past(self) -> None:
        e = err(item(channel_expiry="2024-01-21T00:13:59-08:00"))
        assert isinstance(e, InvalidData)
        assert e.details == {"api_name": "channel_expiry",
                             "json_path": "$.watch[0].channel_expiry"}

    @pytest.mark.parametrize("value", ["2026-11-24", "2026-11-24T09:00:00", "tomorrow",
                                       "2026-13-24T09:00:00+00:00", "2026-11-24T09:00:00+25:00",
                                       1763888000000, True])
    def test_malformed(self, value: object) -> None:
        e = err(item(channel_expiry=value))
        assert e.details == {"api_name": "channel_expiry",
                             "json_path": "$.watch[0].channel_expiry",
                             "expected_data_type": "datetime"}


class TestConditions:
    """`notification_condition`: the v6+ grammar of section 5 and its errors."""

    PATH = "$.watch[0].notification_condition[0]"

    def conds(self, *conditions: Any) -> ChannelInput:
        return ok(item(events=["Leads.all", "Deals.edit"],
                       notification_condition=list(conditions)))

    def fail(self, *conditions: Any) -> ZohoError:
        return err(item(events=["Leads.all", "Deals.edit"],
                        notification_condition=list(conditions)))

    def test_single_field(self) -> None:
        assert self.conds(condition(field("Company"))).conditions == {
            "Leads": FieldRef("Company", 502)}

    def test_nested_groups(self) -> None:
        sel = {"group_operator": "or", "group": [
            {"group_operator": "AND", "group": [field("Company"), field("Phone")]},
            {"field": {"id": "504"}}]}
        assert self.conds(condition(sel)).conditions == {"Leads": FieldGroup("or", (
            FieldGroup("and", (FieldRef("Company", 502), FieldRef("Phone", 503))),
            FieldRef("Email", 504)))}

    def test_module_by_id_and_field_case(self) -> None:
        got = self.conds(condition(field("company"), {"id": 4100000000000131}))
        assert got.conditions == {"Deals": FieldRef("Company", 702)}

    def test_one_condition_per_module(self) -> None:
        got = self.conds(condition(field("Company")),
                         condition(field("Deal_Name"), {"api_name": "Deals"}))
        assert got.conditions is not None and set(got.conditions) == {"Leads", "Deals"}
        e = self.fail(condition(field("Company")), condition(field("Phone")))
        assert e.details == {"api_name": "module",
                             "json_path": "$.watch[0].notification_condition[1].module"}

    def test_ten_fields_but_not_eleven(self) -> None:
        names = ["Last_Name", "Company", "Phone", "Email", "Met_At", "Account", "Rating",
                 "Notes", "City", "State", "Zip"]

        def chain(fields: list[str]) -> dict[str, Any]:
            if len(fields) == 1:
                return field(fields[0])
            return {"group_operator": "or", "group": [field(fields[0]), chain(fields[1:])]}

        assert self.conds(condition(chain(names[:10]))).conditions is not None
        e = self.fail(condition(chain(names)))
        assert isinstance(e, InvalidData)
        assert e.details == {"api_name": "field_selection",
                             "json_path": f"{self.PATH}.field_selection",
                             "maximum_length": 10}

    def test_groups_of_at_most_two(self) -> None:
        sel = {"group_operator": "or", "group": [field("Company"), field("Phone"),
                                                 field("Email")]}
        e = self.fail(condition(sel))
        assert e.details == {"api_name": "group",
                             "json_path": f"{self.PATH}.field_selection.group",
                             "maximum_length": 2}
        assert self.fail(condition({"group_operator": "or", "group": []})).details[
            "api_name"] == "group"

    def test_nesting_is_bounded(self) -> None:
        sel: dict[str, Any] = field("Company")
        for _ in range(ch.MAX_DEPTH):
            sel = {"group_operator": "and", "group": [sel]}
        e = self.fail(condition(sel))
        assert isinstance(e, InvalidData) and e.details["api_name"] == "group"

    def test_bad_group_operator(self) -> None:
        e = self.fail(condition({"group_operator": "xor", "group": [field("Company")]}))
        assert e.details["supported_values"] == ["and", "or"]

    def test_group_parts_missing(self) -> None:
        e = self.fail(condition({"group": [field("Company")]}))
        assert isinstance(e, MandatoryNotFound) and e.details["api_name"] == "group_operator"
        e = self.fail(condition({"group_operator": "or"}))
        assert isinstance(e, MandatoryNotFound) and e.details["api_name"] == "group"
        e = self.fail(condition({}))
        assert isinstance(e, ExpectedFieldMissing)

    def test_field_and_group_together(self) -> None:
        e = self.fail(condition({**field("Company"), "group_operator": "or",
                                 "group": [field("Phone")]}))
        assert isinstance(e, InvalidData) and e.details["api_name"] == "field"

    def test_type(self) -> None:
        e = self.fail({"type": "criteria", "module": {"api_name": "Leads"},
                       "field_selection": field("Company")})
        assert e.details == {"api_name": "type", "json_path": f"{self.PATH}.type",
                             "supported_values": ["field_selection"]}

    def test_missing_type(self) -> None:
        e = self.fail({"module": {"api_name": "Leads"}})
        assert isinstance(e, MandatoryNotFound)
        assert e.details == {"api_name": "type", "json_path": f"{self.PATH}.type"}

    def test_field_selection_without_type(self) -> None:
        e = self.fail({"module": {"api_name": "Leads"}, "field_selection": field("Company")})
        assert isinstance(e, DependentFieldMissing)
        assert e.to_json()["code"] == "DEPENDENT_FIELD_MISSING"
        assert e.details == {"api_name": "field_selection",
                             "json_path": f"{self.PATH}.field_selection",
                             "dependee": {"api_name": "type", "json_path": f"{self.PATH}.type"}}

    def test_missing_module_or_selection(self) -> None:
        e = self.fail({"type": "field_selection", "field_selection": field("Company")})
        assert isinstance(e, MandatoryNotFound) and e.details["api_name"] == "module"
        e = self.fail({"type": "field_selection", "module": {"api_name": "Leads"}})
        assert isinstance(e, MandatoryNotFound) and e.details["api_name"] == "field_selection"

    def test_module_needs_name_or_id(self) -> None:
        e = self.fail(condition(field("Company"), {"module_name": "Leads"}))
        assert isinstance(e, ExpectedFieldMissing)
        assert e.to_json()["code"] == "EXPECTED_FIELD_MISSING"
        assert e.details == {"expected_fields": [
            {"api_name": "api_name", "json_path": f"{self.PATH}.module.api_name"},
            {"api_name": "id", "json_path": f"{self.PATH}.module.id"}]}

    def test_name_and_id_must_agree(self) -> None:
        e = self.fail(condition(field("Company"),
                                {"api_name": "Leads", "id": "4100000000000131"}))
        assert isinstance(e, Ambiguity)
        assert e.details == {"ambiguity_due_to": [
            {"api_name": "api_name", "json_path": f"{self.PATH}.module.api_name"},
            {"api_name": "id", "json_path": f"{self.PATH}.module.id"}]}
        got = self.conds(condition(field("Company"),
                                   {"api_name": "Leads", "id": "4100000000000125"}))
        assert got.conditions == {"Leads": FieldRef("Company", 502)}
        e = self.fail(condition({"field": {"api_name": "Company", "id": "503"}}))
        assert isinstance(e, Ambiguity)

    def test_unknown_module_or_field(self) -> None:
        e = self.fail(condition(field("Company"), {"api_name": "Nope"}))
        assert e.details == {"api_name": "api_name",
                             "json_path": f"{self.PATH}.module.api_name"}
        e = self.fail(condition(field("Company"), {"id": "1"}))
        assert e.details == {"api_name": "id", "json_path": f"{self.PATH}.module.id"}
        e = self.fail(condition(field("Deal_Name")))  # a field of another module
        assert e.details == {"api_name": "api_name",
                             "json_path": f"{self.PATH}.field_selection.field.api_name"}

    def test_wrong_json_types(self) -> None:
        assert self.fail("x").details["expected_data_type"] == "jsonobject"
        e = err(item(notification_condition={"type": "field_selection"}))
        assert e.details["expected_data_type"] == "jsonarray"
        e = self.fail(condition(field("Company"), {"api_name": 5}))
        assert e.details["expected_data_type"] == "string"
        e = self.fail(condition({"field": {"id": True}}))
        assert e.details["expected_data_type"] == "long"
        e = self.fail(condition({"field": "Company"}))
        assert e.details["expected_data_type"] == "jsonobject"
        e = self.fail(condition(field("Company"), extra=1))
        assert e.details == {"api_name": "extra", "json_path": f"{self.PATH}.extra"}

    def test_module_must_be_watched_on_post(self) -> None:
        e = err(item(events=["Deals.all"], notification_condition=[condition(field("Company"))]))
        assert e.details == {"api_name": "module", "json_path": f"{self.PATH}.module"}

    def test_merge_may_name_a_module_it_does_not_send_events_for(self) -> None:
        inp = ok({"channel_id": "1", "notification_condition": [condition(field("Company"))]},
                 "merge")
        assert inp.conditions == {"Leads": FieldRef("Company", 502)}

    def test_get_echo_parses_back(self) -> None:
        sel = {"group_operator": "or", "group": [
            {"group_operator": "and", "group": [field("Company"), field("Phone")]},
            field("Email")]}
        channel = new_channel(events=["Leads.all"], notification_condition=[condition(sel)])
        (entry,) = ch.get_entries(channel, BASE, "v8", MODULES, UTC)
        again = ok(item(events=["Leads.all"],
                        notification_condition=entry["notification_condition"]))
        assert again.conditions == channel.conditions

    def test_satisfied(self) -> None:
        sel = FieldGroup("or", (FieldGroup("and", (FieldRef("Company", 0),
                                                    FieldRef("Phone", 0))),
                                FieldRef("Email", 0)))
        assert ch.satisfied(sel, {"Email"})
        assert ch.satisfied(sel, {"Company", "Phone", "City"})
        assert not ch.satisfied(sel, {"Company", "City"})
        assert not ch.satisfied(sel, set())
        assert ch.selected_fields(sel) == ("Company", "Phone", "Email")


class TestApply:
    """POST creates or upserts, PUT replaces, PATCH merges or removes; expired = absent."""

    def later(self, raw: dict[str, Any], method: Method, existing: Channel | None,
              at: int = NOW + 1000) -> Channel | None:
        return apply(existing, ok(raw, method, now=at), at)

    def test_post_creates_with_defaults(self) -> None:
        c = new_channel()
        assert c == Channel(
            channel_id="9017165751624", notify_url=URL, token=None,
            expiry_ms=(NOW + HOUR) // 1000 * 1000, return_affected_field_values=False,
            notify_on_related_action=True,
            events={"Leads": frozenset({"create", "edit"})}, conditions={}, fields=None,
            created_ms=NOW, updated_ms=NOW)

    def test_related_default_is_configurable(self) -> None:
        c = apply(None, ok(item()), NOW, related_default=False)
        assert c is not None and c.notify_on_related_action is False

    def test_post_on_a_live_channel_upserts_the_named_modules(self) -> None:
        c = new_channel(events=["Leads.all", "Deals.create"], token="tok",
                        return_affected_field_values=True,
                        notification_condition=[condition(field("Company"))])
        expiry = format_ms(NOW + 5 * HOUR, UTC)
        again = self.later(item(events=["Leads.delete", "Accounts.edit"],
                                channel_expiry=expiry), "enable", c)
        assert again is not None
        assert again.events == {"Leads": frozenset({"delete"}),
                                "Deals": frozenset({"create"}),
                                "Accounts": frozenset({"edit"})}
        assert again.conditions == {}  # Leads named again, without a condition
        assert again.token == "tok" and again.return_affected_field_values is True
        assert again.expiry_ms == NOW + 5 * HOUR
        assert again.created_ms == NOW and again.updated_ms == NOW + 1000

    def test_post_renews_the_expiry(self) -> None:
        c = new_channel(channel_expiry=format_ms(NOW + 5 * HOUR, UTC))
        again = self.later(item(), "enable", c, NOW + 4 * HOUR)
        assert again is not None and again.expiry_ms == NOW + 5 * HOUR

    def test_post_on_an_expired_channel_starts_afresh(self) -> None:
        c = new_channel(events=["Deals.all"], token="old")
        at = c.expiry_ms
        again = self.later(item(), "enable", c, at)
        assert again is not None
        assert again.events == {"Leads": frozenset({"create", "edit"})}
        assert again.token is None and again.created_ms == at

    def test_put_replaces_everything(self) -> None:
        c = new_channel(events=["Accounts.edit", "Leads.all"], token="tok",
                        return_affected_field_values=True, notify_on_related_action=False)
        put = self.later(item(events=["Leads.create", "Deals.create"]), "replace", c)
        assert put is not None
        assert put.events == {"Leads": frozenset({"create"}), "Deals": frozenset({"create"})}
        assert put.token is None and put.return_affected_field_values is False
        assert put.notify_on_related_action is True
        assert put.created_ms == NOW and put.updated_ms == NOW + 1000

    @pytest.mark.parametrize("method", ["replace", "merge", "remove_events"])
    def test_unknown_or_expired_is_not_subscribed(self, method: Method) -> None:
        raw = item(_delete_events=True) if method == "remove_events" else item()
        if method == "remove_events":
            del raw["notify_url"]
        method_in = "merge" if method == "remove_events" else method
        c = new_channel()
        for existing, at in ((None, NOW), (c, c.expiry_ms), (c, c.expiry_ms + 1)):
            with pytest.raises(NotSubscribed) as exc:
                apply(existing, ok(raw, method_in, now=at), at)
            assert exc.value.to_json() == {
                "code": "NOT_SUBSCRIBED", "details": {}, "status": "error",
                "message": "Not subscribed for actions-watch of the given channel"}

    def test_patch_adds_events_and_keeps_the_rest(self) -> None:
        c = new_channel(events=["Leads.all"], token="TOKEN_A",
                        return_affected_field_values=True,
                        channel_expiry=format_ms(NOW + 3 * HOUR, UTC),
                        notification_condition=[condition(field("Company"))])
        patched = self.later({"notify_url": URL + "&x=1", "channel_id": "9017165751624",
                              "events": ["Deals.create"]}, "merge", c)
        assert patched is not None
        assert patched.events == {"Leads": frozenset(ch.OPERATIONS),
                                  "Deals": frozenset({"create"})}
        assert patched.notify_url == URL + "&x=1"
        assert patched.token == "TOKEN_A" and patched.return_affected_field_values is True
        assert patched.expiry_ms == NOW + 3 * HOUR
        assert patched.conditions == c.conditions

    def test_patch_changes_given_settings(self) -> None:
        c = new_channel(token="a")
        patched = self.later({"channel_id": c.channel_id, "token": "b",
                              "channel_expiry": format_ms(NOW + 2 * HOUR, UTC),
                              "notify_on_related_action": False,
                              "notification_condition": [condition(field("Phone"))]},
                             "merge", c)
        assert patched is not None
        assert (patched.token, patched.expiry_ms, patched.notify_on_related_action) == (
            "b", NOW + 2 * HOUR, False)
        assert patched.conditions == {"Leads": FieldRef("Phone", 503)}
        assert patched.events == c.events

    def test_patch_drops_conditions_of_unwatched_modules(self) -> None:
        c = new_channel()
        patched = self.later({"channel_id": c.channel_id, "notification_condition": [
            condition(field("Deal_Name"), {"api_name": "Deals"})]}, "merge", c)
        assert patched is not None and patched.conditions == {}

    def test_remove_events(self) -> None:
        c = new_channel(events=["Leads.all", "Deals.all"],
                        notification_condition=[condition(field("Company"))])
        removed = self.later({"_delete_events": True, "channel_id": c.channel_id,
                              "events": ["Leads.edit", "Leads.delete", "Deals.all",
                                         "Accounts.create"]}, "merge", c)
        assert removed is not None
        assert removed.events == {"Leads": frozenset({"create"})}
        assert removed.conditions == c.conditions
        assert removed.expiry_ms == c.expiry_ms

    def test_removing_the_last_events_deletes_the_channel(self) -> None:
        c = new_channel(events=["Leads.all"])
        gone = self.later({"_delete_events": True, "channel_id": c.channel_id,
                           "events": ["Leads.all"]}, "merge", c)
        assert gone is None

    def test_conditions_go_with_their_module(self) -> None:
        c = new_channel(events=["Leads.all", "Deals.all"],
                        notification_condition=[condition(field("Company"))])
        removed = self.later({"_delete_events": True, "channel_id": c.channel_id,
                              "events": ["Leads.all"]}, "merge", c)
        assert removed is not None and removed.conditions == {}

    def test_sdk8_scenario(self) -> None:
        """clients.md 1.8: enable, merge Contacts-like module, replace, remove."""
        c = new_channel(events=["Leads.create", "Leads.edit", "Leads.delete"],
                        token="TOKEN_A", return_affected_field_values=True)
        c2 = self.later({"notify_url": URL, "channel_id": c.channel_id,
                         "events": ["Deals.create"]}, "merge", c)
        assert c2 is not None and c2.events["Leads"] == frozenset(ch.OPERATIONS)
        assert c2.token == "TOKEN_A" and c2.return_affected_field_values
        c3 = self.later(item(events=["Leads.create", "Leads.delete"], token="TOKEN_A",
                             return_affected_field_values=True), "replace", c2)
        assert c3 is not None and c3.events == {"Leads": frozenset({"create", "delete"})}
        c4 = self.later({"_delete_events": True, "channel_id": c.channel_id,
                         "events": ["Leads.edit", "Leads.delete"]}, "merge", c3)
        assert c4 is not None and c4.events == {"Leads": frozenset({"create"})}

    @given(channels(), st.lists(st.tuples(st.sampled_from(["Leads", "Deals", "Accounts"]),
                                          st.sampled_from(["create", "edit", "delete", "all"])),
                                min_size=1, max_size=5))
    def test_removal_is_set_difference(self, c: Channel, pairs: list[tuple[str, str]]) -> None:
        c = replace(c, expiry_ms=NOW + HOUR)
        inp = ok({"_delete_events": True, "channel_id": c.channel_id,
                  "events": [f"{m}.{op}" for m, op in pairs]}, "merge")
        assert inp.events is not None
        result = apply(c, inp, NOW)
        left = {m: ops - inp.events.get(m, frozenset()) for m, ops in c.events.items()}
        left = {m: ops for m, ops in left.items() if ops}
        if not left:
            assert result is None
        else:
            assert result is not None and result.events == left
            assert set(result.conditions) <= set(result.events)
            assert replace(result, events=c.events, conditions=c.conditions,
                           updated_ms=c.updated_ms) == c

    def test_require_live(self) -> None:
        c = new_channel()
        assert ch.require_live(c, NOW) is c
        with pytest.raises(NotSubscribed):
            ch.require_live(c, c.expiry_ms)
        with pytest.raises(NotSubscribed):
            ch.require_live(None, NOW)


class TestRendering:
    """Action items, DELETE items and GET entries in Zoho's shapes."""

    LA = zone("America/Los_Angeles")

    def test_enable_item(self) -> None:
        inp = ok(item(events=["Leads.all", "Deals.delete"],
                      channel_expiry="2025-11-24T09:00:00+00:00"))
        c = apply(None, inp, NOW)
        assert c is not None
        assert ch.action_item(inp, c, BASE + "/", "v8", MODULES, UTC) == {
            "code": "SUCCESS", "status": "success",
            "message": "Successfully subscribed for actions-watch of the given module",
            "details": {"events": [
                {"channel_expiry": "2025-11-24T09:00:00+00:00",
                 "resource_uri": "http://127.0.0.1:8000/crm/v8/Leads",
                 "resource_id": "4100000000000125", "resource_name": "Leads",
                 "channel_id": "9017165751624"},
                {"channel_expiry": "2025-11-24T09:00:00+00:00",
                 "resource_uri": "http://127.0.0.1:8000/crm/v8/Deals",
                 "resource_id": "4100000000000131", "resource_name": "Deals",
                 "channel_id": "9017165751624"}]}}

    def test_expiry_in_the_org_zone(self) -> None:
        inp = ok(item(channel_expiry="2025-11-24T09:00:00+00:00"))
        c = apply(None, inp, NOW)
        assert c is not None
        entry = ch.action_item(inp, c, BASE, "v2", MODULES, self.LA)["details"]["events"][0]
        assert entry["channel_expiry"] == "2025-11-24T01:00:00-08:00"
        assert entry["resource_uri"] == "http://127.0.0.1:8000/crm/v2/Leads"

    def test_messages(self) -> None:
        c = new_channel(events=["Leads.all", "Deals.all"])
        cases: list[tuple[dict[str, Any], Method, str]] = [
            (item(), "replace", "Successfully subscribed for actions-watch of the given module"),
            ({"channel_id": c.channel_id, "events": ["Deals.edit"]}, "merge",
             "Successfully updated the subscribe details"),
            ({"channel_id": c.channel_id, "events": ["Deals.edit"], "_delete_events": True},
             "merge", "Successfully removed the subscribe details"),
        ]
        for raw, method, message in cases:
            inp = ok(raw, method)
            result = apply(c, inp, NOW)
            assert ch.action_item(inp, result, BASE, "v8", MODULES, UTC)["message"] == message

    def test_merge_lists_the_modules_it_touched(self) -> None:
        c = new_channel(events=["Leads.all", "Deals.all"])
        inp = ok({"channel_id": c.channel_id, "events": ["Deals.edit"]}, "merge")
        entries = ch.action_item(inp, apply(c, inp, NOW), BASE, "v8", MODULES,
                                 UTC)["details"]["events"]
        assert [e["resource_name"] for e in entries] == ["Deals"]
        assert "channel_expiry" in entries[0]
        inp = ok({"channel_id": c.channel_id, "token": "x"}, "merge")
        entries = ch.action_item(inp, apply(c, inp, NOW), BASE, "v8", MODULES,
                                 UTC)["details"]["events"]
        assert [e["resource_name"] for e in entries] == ["Leads", "Deals"]

    def test_removal_entries_have_no_expiry(self) -> None:
        c = new_channel(events=["Leads.all"])
        inp = ok({"channel_id": c.channel_id, "events": ["Leads.all"], "_delete_events": True},
                 "merge")
        result = apply(c, inp, NOW)
        assert result is None
        assert ch.action_item(inp, result, BASE, "v8", MODULES, UTC)["details"] == {
            "events": [{"resource_uri": "http://127.0.0.1:8000/crm/v8/Leads",
                        "resource_id": "4100000000000125", "resource_name": "Leads",
                        "channel_id": c.channel_id}]}

    def test_delete_items_one_per_module(self) -> None:
        c = new_channel(events=["Leads.all", "Deals.create"])
        assert ch.delete_items(c, BASE, "v8", MODULES) == [
            {"code": "SUCCESS", "status": "success",
             "message": "Successfully un-subscribed from actions-watch",
             "details": {"resource_uri": f"{BASE}/crm/v8/{name}", "resource_id": rid,
                         "channel_id": c.channel_id}}
            for name, rid in (("Leads", "4100000000000125"), ("Deals", "4100000000000131"))]

    def test_get_entries(self) -> None:
        c = new_channel(events=["Deals.all", "Leads.create"], token="t",
                        fields={"Deals": ["Company"]}, notify_on_related_action=False)
        entries = ch.get_entries(c, BASE, "v8", MODULES, self.LA)
        assert [e["resource_name"] for e in entries] == ["Deals", "Leads"]
        deals = entries[0]
        assert list(deals) == [
            "notify_on_related_action", "channel_expiry", "return_affected_field_values",
            "resource_uri", "resource_id", "notify_url", "resource_name", "fields",
            "notification_condition", "channel_id", "events", "token"]
        assert deals["events"] == ["Deals.edit", "Deals.create", "Deals.delete"]
        assert deals["channel_expiry"] == format_ms(c.expiry_ms, self.LA)
        assert deals["notification_condition"] is None
        assert (deals["token"], deals["notify_on_related_action"], deals["fields"]) == (
            "t", False, {"Deals": ["Company"]})
        assert ch.get_entries(c, BASE, "v8", MODULES, UTC, module="leads")[0]["events"] == [
            "Leads.create"]

    def test_get_echoes_conditions_padded(self) -> None:
        c = new_channel(events=["Leads.all"], notification_condition=[condition(
            {"group_operator": "or", "group": [field("Company"), field("Phone")]})])
        (entry,) = ch.get_entries(c, BASE, "v8", MODULES, UTC)
        pad = {"group_operator": None, "group": None}
        assert entry["notification_condition"] == [{
            "type": "field_selection",
            "module": {"api_name": "Leads", "id": "4100000000000125"},
            "field_selection": {"group_operator": "or", "group": [
                {"field": {"api_name": "Company", "id": "502"}, **pad},
                {"field": {"api_name": "Phone", "id": "503"}, **pad}]}}]

    def test_live_channels(self) -> None:
        c = new_channel()
        assert ch.live_channels([c], NOW) == [c]
        assert ch.live_channels([c], c.expiry_ms) == []


class TestDocRoundTrip:
    """`to_doc` is JSON-able and `from_doc` gives the same channel back."""

    @given(channels())
    def test_round_trip(self, c: Channel) -> None:
        doc = orjson.loads(orjson.dumps(c.to_doc()))
        assert Channel.from_doc(doc) == c

    def test_malformed(self) -> None:
        doc = new_channel().to_doc()
        with pytest.raises(ValueError):
            Channel.from_doc({**doc, "events": {"Leads": ["modify"]}})
        with pytest.raises(ValueError):
            Channel.from_doc({**doc, "conditions": {"Leads": {"nope": 1}}})
        with pytest.raises(KeyError):
            Channel.from_doc({k: v for k, v in doc.items() if k != "notify_url"})

    def test_replace_keeps_it_a_value(self) -> None:
        c = new_channel()
        assert replace(c, token="x") != c
