"""The v8 SDK's notifications (`NotificationsOperations`), unmodified, against a live server.

docs clients.md sections 1.8 and 1.9: the SDK enables, reads, merges, replaces, trims and
deletes channels on `/crm/v8/actions/watch` and parses every reply into its objects, while
record changes it makes itself are POSTed by the server to a real receiver. Each SDK session
runs in a child process (tests/clients/sdk8_notify_driver.py) in the Asia/Kolkata zone, so the
SDK sends `channel_expiry` with a `+05:30` offset; a test is one or two sessions sharing a
work directory (and the SDK's cached token). The server runs with fast retry settings.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.sdkrun import logged_errors, logged_requests, run_driver, sent_requests
from tests.conftest import Live
from tests.receiver import Received, Receiver

TZ = "Asia/Kolkata"
CHANNEL = "9017165751624"
OTHER = "9017165751625"
QUERY = "key1=val1&key2=val2"
SUBSCRIBED = "Successfully subscribed for actions-watch of the given module"
UPDATED = "Successfully updated the subscribe details"
REMOVED = "Successfully removed the subscribe details"
UNSUBSCRIBED = "Successfully un-subscribed from actions-watch"
QUIET_SECONDS = 1.0
"""How long to wait for deliveries that must not come (the server polls every 20 ms)."""


@pytest.fixture
def live(fast_live: Live) -> Live:
    return fast_live


# -- helpers ----------------------------------------------------------------------------------

def sdk(live: Live, workdir: Path, *steps: dict[str, Any]) -> list[dict[str, Any]]:
    """One SDK session running `steps`; checks that hold for every session."""
    report = run_driver("sdk8_notify_driver.py", live, workdir, list(steps), tz=TZ)
    assert "initialize_error" not in report, report
    assert [r for r in report["results"] if "exception" in r] == []
    assert logged_errors(workdir) == []
    assert report["environment_url"] == live.base_url
    for request in logged_requests(workdir):
        assert request["url"].startswith(live.base_url + "/crm/v8/"), request
    return report["results"]  # type: ignore[no-any-return]


def expiry_in(delta: timedelta) -> datetime:
    return (datetime.now(UTC) + delta).replace(microsecond=0)


def notify_url(receiver: Receiver) -> str:
    return f"{receiver.url}/zoho/notify?{QUERY}"


def enable_item(receiver: Receiver, expiry: datetime, channel_id: str = CHANNEL,
                events: tuple[str, ...] = ("Leads.create", "Leads.edit", "Leads.delete"),
                **extra: Any) -> dict[str, Any]:
    """A `watch` item as in clients.md 1.8: every key the SDK example sets."""
    return {"notify_url": notify_url(receiver), "token": f"TOKEN_A_{channel_id}",
            "return_affected_field_values": True, "channel_expiry": expiry.isoformat(),
            "channel_id": channel_id, "events": list(events), **extra}


def enable(receiver: Receiver, expiry: datetime, *items: dict[str, Any]) -> dict[str, Any]:
    return {"op": "enable_notifications",
            "watch": list(items) or [enable_item(receiver, expiry)]}


def create_lead(*names: str) -> dict[str, Any]:
    return {"op": "create", "module": "Leads",
            "records": [{"Last_Name": n, "Company": f"Co {n}"} for n in names]}


def create_contact(name: str) -> dict[str, Any]:
    return {"op": "create", "module": "Contacts", "records": [{"Last_Name": name}]}


def created_ids(result: dict[str, Any]) -> list[str]:
    assert (result["status"], result["class"]) == (201, "ActionWrapper"), result
    return [i["details"]["values"]["id"] for i in result["data"]]


def get_step(**params: Any) -> dict[str, Any]:
    return {"op": "get_notifications", "params": params}


def module_ids(api: httpx.Client) -> dict[str, int]:
    modules = api.get("/crm/v8/settings/modules").json()["modules"]
    return {m["api_name"]: int(m["id"]) for m in modules}


def same_instant(a: str, b: datetime | str) -> bool:
    other = b if isinstance(b, datetime) else datetime.fromisoformat(b)
    return datetime.fromisoformat(a) == other


def success(result: dict[str, Any], message: str, count: int = 1) -> list[dict[str, Any]]:
    """The parsed items of an action reply, all SuccessResponse with `message`."""
    assert (result["status"], result["class"]) == (200, "ActionWrapper"), result
    items = result["watch"]
    assert len(items) == count, items
    for it in items:
        assert (it["class"], it["status"], it["code"], it["message"]) == (
            "SuccessResponse", "success", "SUCCESS", message), it
    return items  # type: ignore[no-any-return]


def check_events(it: dict[str, Any], live: Live, ids: dict[str, int], channel_id: str,
                 modules: list[str], expiry: datetime | None) -> None:
    """`details.events` parsed into Event objects, one per module, with typed members."""
    assert it["events_class"] == ["Event"]
    assert it["details"]["values"] == {}  # nothing but events in details
    assert [e["values"]["resource_name"] for e in it["events"]] == modules
    for e in it["events"]:
        values, types = e["values"], e["types"]
        name = values["resource_name"]
        assert values["channel_id"] == channel_id and types["channel_id"] == "str"
        assert values["resource_id"] == ids[name] and types["resource_id"] == "int"
        assert values["resource_uri"] == f"{live.base_url}/crm/v8/{name}"
        if expiry is None:  # a removal's entries carry no expiry
            assert values["channel_expiry"] is None
        else:
            assert types["channel_expiry"] == "datetime"
            assert same_instant(values["channel_expiry"], expiry)
            # The SDK converts to the client's zone.
            assert values["channel_expiry"].endswith("+05:30")


def wire_entries(api: httpx.Client, **params: str) -> list[dict[str, Any]]:
    r = api.get("/crm/v8/actions/watch", params=params)
    if r.status_code == 204:
        return []
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    return r.json()["watch"]  # type: ignore[no-any-return]


def check_hook(got: Received, live: Live, operation: str, ids: list[str],
               channel_id: str = CHANNEL, module: str = "Leads") -> dict[str, Any]:
    """A webhook as clients.md 1.9 describes it; its body."""
    assert (got.path, got.query) == ("/zoho/notify", QUERY)
    assert got.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = got.json
    assert (body["operation"], body["module"]) == (operation, module), body
    assert body["ids"] == ids, body
    assert body["channel_id"] == channel_id
    assert body["token"] == f"TOKEN_A_{channel_id}"
    assert body["query_params"] == {"key1": "val1", "key2": "val2"}
    assert body["resource_uri"].startswith(live.base_url + "/crm/")
    assert body["resource_uri"].endswith("/" + module)
    assert abs(body["server_time"] - time.time() * 1000) < 60_000
    return body


def by_operation(got: list[Received]) -> dict[str, Received]:
    """Webhooks by operation, one each (changes to different records may arrive in any
    order: the server keeps the order per record only)."""
    found = {r.json["operation"]: r for r in got}
    assert len(found) == len(got), [r.json for r in got]
    return found


def operations(receiver: Receiver) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(b["module"], b["operation"], tuple(b["ids"])) for b in receiver.bodies()]


def quiet(receiver: Receiver, count: int) -> None:
    """Wait a bounded time and check that nothing arrived beyond the first `count`."""
    time.sleep(QUIET_SECONDS)
    assert len(receiver.received) == count, operations(receiver)


# -- tests ------------------------------------------------------------------------------------

class TestEnable:
    """`enable_notifications`, then records the SDK creates, edits and deletes are delivered."""

    def test_reply_wire_and_deliveries(self, live: Live, api: httpx.Client,
                                       receiver: Receiver, tmp_path: Path) -> None:
        work = tmp_path / "sdk"
        expiry = expiry_in(timedelta(days=2))
        enabled, created = sdk(live, work, enable(receiver, expiry), create_lead("A", "B"))
        (it,) = success(enabled, SUBSCRIBED)
        ids = module_ids(api)
        check_events(it, live, ids, CHANNEL, ["Leads"], expiry)
        a, b = created_ids(created)
        # What the SDK sent: channel_id a string, the expiry in its own zone, keys in order.
        (sent,) = sent_requests(work)
        assert (sent["method"], sent["url"]) == ("POST", live.base_url + "/crm/v8/actions/watch")
        # No Content-Type at all (clients.md 2 item 6): the server parses the JSON regardless.
        assert "content-type" not in {k.lower() for k in sent["headers"]}
        body = json.loads(sent["body"])
        assert list(body["watch"][0]) == ["notify_url", "token", "return_affected_field_values",
                                          "channel_expiry", "channel_id", "events"]
        assert body["watch"][0]["channel_id"] == CHANNEL
        assert body["watch"][0]["channel_expiry"].endswith("+05:30")
        assert body["watch"][0]["notify_url"] == notify_url(receiver)
        # The insert arrives; then an edit and a delete in a second session.
        check_hook(receiver.wait_for(1)[0], live, "insert", [a, b])
        updated, deleted = sdk(live, work,
                               {"op": "update", "module": "Leads", "id": a,
                                "values": {"Company": "Updated Co"}},
                               {"op": "delete", "module": "Leads", "id": b})
        assert [i["code"] for i in updated["data"] + deleted["data"]] == ["SUCCESS"] * 2
        hooks = by_operation(receiver.wait_for(3)[1:])
        update = check_hook(hooks["update"], live, "update", [a])
        assert update["affected_fields"] == [{a: ["Company"]}]
        assert update["affected_values"] == [{"record_id": a,
                                              "values": {"Company": "Updated Co"}}]
        check_hook(hooks["delete"], live, "delete", [b])
        # The server stored what the SDK asked for, query string included.
        (entry,) = wire_entries(api, channel_id=CHANNEL)
        assert entry["notify_url"] == notify_url(receiver)
        assert entry["token"] == f"TOKEN_A_{CHANNEL}"
        assert entry["return_affected_field_values"] is True
        assert sorted(entry["events"]) == ["Leads.create", "Leads.delete", "Leads.edit"]
        assert same_instant(entry["channel_expiry"], expiry)
        quiet(receiver, 3)


class TestGet:
    """`get_notifications` without filters, by channel_id, by module and by both."""

    def test_filters_parse_into_notifications(self, live: Live, api: httpx.Client,
                                              receiver: Receiver, tmp_path: Path) -> None:
        expiry = expiry_in(timedelta(days=3))
        other = enable_item(receiver, expiry, OTHER, ("Leads.create", "Contacts.edit"),
                            return_affected_field_values=False)
        enabled, everything, by_id, by_module, by_both, unknown, unwatched, paged = sdk(
            live, tmp_path / "sdk",
            enable(receiver, expiry, enable_item(receiver, expiry), other),
            get_step(),
            get_step(channel_id=int(CHANNEL)),
            get_step(module="Contacts"),
            get_step(channel_id=int(OTHER), module="Leads"),
            get_step(channel_id=1234),
            get_step(module="Deals"),
            get_step(page=2, per_page=2))
        first, second = success(enabled, SUBSCRIBED, count=2)
        ids = module_ids(api)
        check_events(first, live, ids, CHANNEL, ["Leads"], expiry)
        check_events(second, live, ids, OTHER, ["Leads", "Contacts"], expiry)

        def keys(result: dict[str, Any]) -> list[tuple[str, str]]:
            assert (result["status"], result["class"]) == (200, "ResponseWrapper"), result
            return sorted((n["values"]["channel_id"], n["values"]["resource_name"])
                          for n in result["watch"])

        assert keys(everything) == [(CHANNEL, "Leads"), (OTHER, "Contacts"), (OTHER, "Leads")]
        assert keys(by_id) == [(CHANNEL, "Leads")]
        assert keys(by_module) == [(OTHER, "Contacts")]
        assert keys(by_both) == [(OTHER, "Leads")]
        assert (unknown, unwatched) == ({"status": 204, "class": None},) * 2
        assert everything["info"]["values"] == {"per_page": 200, "count": 3, "page": 1,
                                                "more_records": False}
        assert by_both["info"]["values"]["count"] == 1
        assert len(paged["watch"]) == 1
        assert paged["info"]["values"] == {"per_page": 2, "count": 1, "page": 2,
                                           "more_records": False}
        assert paged["info"]["types"] == {"per_page": "int", "count": "int", "page": "int",
                                          "more_records": "bool"}
        # Every parsed entry equals the server's JSON, with the SDK's types.
        wire = {(w["channel_id"], w["resource_name"]): w for w in wire_entries(api)}
        for n in everything["watch"]:
            values, types = n["values"], n["types"]
            w = wire[(values["channel_id"], values["resource_name"])]
            assert values["events"] == w["events"]
            assert (values["notify_url"], values["token"]) == (w["notify_url"], w["token"])
            assert values["notify_url"] == notify_url(receiver)
            assert values["resource_id"] == int(w["resource_id"]) == ids[w["resource_name"]]
            assert values["resource_uri"] == w["resource_uri"]
            assert values["return_affected_field_values"] is w["return_affected_field_values"]
            assert values["notify_on_related_action"] is w["notify_on_related_action"]
            assert same_instant(values["channel_expiry"], expiry)
            assert types["channel_expiry"] == "datetime" and types["resource_id"] == "int"
            assert types["channel_id"] == "str" and types["events"] == "list"
        assert wire[(CHANNEL, "Leads")]["return_affected_field_values"] is True
        assert wire[(OTHER, "Leads")]["return_affected_field_values"] is False
        assert wire[(OTHER, "Leads")]["events"] == ["Leads.create"]
        assert wire[(OTHER, "Contacts")]["events"] == ["Contacts.edit"]
        assert wire[(OTHER, "Contacts")]["token"] == f"TOKEN_A_{OTHER}"
        # The SDK sent channel_id and module as query parameters.
        gets = [r["params"] for r in sent_requests(tmp_path / "sdk") if r["method"] == "GET"]
        assert gets[1:4] == [{"channel_id": CHANNEL}, {"module": "Contacts"},
                             {"channel_id": OTHER, "module": "Leads"}]


class TestUpdateNotification:
    """`update_notification` (PATCH, merge) adds Contacts.create and keeps the rest."""

    def test_adds_events_and_keeps_token(self, live: Live, api: httpx.Client,
                                         receiver: Receiver, tmp_path: Path) -> None:
        work = tmp_path / "sdk"
        expiry = expiry_in(timedelta(days=2))
        _, created = sdk(live, work, enable(receiver, expiry), create_lead("A"))
        (lead,) = created_ids(created)
        receiver.wait_for(1)
        patched, updated, contact, listed = sdk(
            live, work,
            {"op": "update_notification", "watch": [{
                "notify_url": notify_url(receiver), "channel_id": CHANNEL,
                "events": ["Contacts.create"]}]},
            {"op": "update", "module": "Leads", "id": lead, "values": {"Company": "Merged"}},
            create_contact("C"),
            get_step(channel_id=int(CHANNEL)))
        (it,) = success(patched, UPDATED)
        check_events(it, live, module_ids(api), CHANNEL, ["Contacts"], expiry)
        assert updated["data"][0]["code"] == "SUCCESS"
        (contact_id,) = created_ids(contact)
        sent = sent_requests(work)[-2]
        assert sent["method"] == "PATCH"
        assert json.loads(sent["body"]) == {"watch": [{
            "notify_url": notify_url(receiver), "channel_id": CHANNEL,
            "events": ["Contacts.create"]}]}
        # The Leads events, the token and return_affected_field_values survived the merge.
        got = receiver.wait_for(3)
        by_module = {r.json["module"]: r for r in got[1:]}
        update = check_hook(by_module["Leads"], live, "update", [lead])
        assert update["affected_values"] == [{"record_id": lead,
                                              "values": {"Company": "Merged"}}]
        check_hook(by_module["Contacts"], live, "insert", [contact_id], module="Contacts")
        events = {n["values"]["resource_name"]: n["values"] for n in listed["watch"]}
        assert sorted(events["Leads"]["events"]) == ["Leads.create", "Leads.delete",
                                                     "Leads.edit"]
        assert events["Contacts"]["events"] == ["Contacts.create"]
        for values in events.values():
            assert values["token"] == f"TOKEN_A_{CHANNEL}"
            assert values["return_affected_field_values"] is True
            assert same_instant(values["channel_expiry"], expiry)
        quiet(receiver, 3)


class TestUpdateNotifications:
    """`update_notifications` (PUT, replace) leaves exactly Leads.create and Leads.delete."""

    def test_edits_are_no_longer_delivered(self, live: Live, api: httpx.Client,
                                           receiver: Receiver, tmp_path: Path) -> None:
        work = tmp_path / "sdk"
        expiry = expiry_in(timedelta(days=2))
        _, created = sdk(live, work, enable(receiver, expiry), create_lead("A"))
        (first,) = created_ids(created)
        receiver.wait_for(1)
        later = expiry_in(timedelta(days=4))
        replaced, edited, created, deleted, listed = sdk(
            live, work,
            {"op": "update_notifications", "watch": [enable_item(
                receiver, later, events=("Leads.create", "Leads.delete"))]},
            {"op": "update", "module": "Leads", "id": first, "values": {"Company": "Nobody"}},
            create_lead("B"),
            {"op": "delete", "module": "Leads", "id": first},
            get_step(channel_id=int(CHANNEL)))
        (it,) = success(replaced, SUBSCRIBED)
        check_events(it, live, module_ids(api), CHANNEL, ["Leads"], later)
        assert edited["data"][0]["code"] == deleted["data"][0]["code"] == "SUCCESS"
        (second,) = created_ids(created)
        assert sent_requests(work)[-2]["method"] == "PUT"
        # Changes to one record are delivered in order: had the edit of `first` been
        # delivered, it would have arrived before its delete, among these three.
        hooks = by_operation(receiver.wait_for(3)[1:])
        check_hook(hooks["insert"], live, "insert", [second])
        check_hook(hooks["delete"], live, "delete", [first])
        (entry,) = listed["watch"]
        assert sorted(entry["values"]["events"]) == ["Leads.create", "Leads.delete"]
        assert entry["values"]["token"] == f"TOKEN_A_{CHANNEL}"
        assert same_instant(entry["values"]["channel_expiry"], later)
        quiet(receiver, 3)


class TestDisableNotification:
    """`disable_notification` (PATCH with `_delete_events`) removes the events it names."""

    def test_only_creates_are_left(self, live: Live, api: httpx.Client,
                                   receiver: Receiver, tmp_path: Path) -> None:
        work = tmp_path / "sdk"
        expiry = expiry_in(timedelta(days=2))
        _, created = sdk(live, work, enable(receiver, expiry), create_lead("A"))
        (first,) = created_ids(created)
        receiver.wait_for(1)
        disabled, edited, deleted, created, listed = sdk(
            live, work,
            {"op": "disable_notification", "watch": [{
                "_delete_events": True, "channel_id": CHANNEL,
                "events": ["Leads.edit", "Leads.delete"]}]},
            {"op": "update", "module": "Leads", "id": first, "values": {"Company": "Nobody"}},
            {"op": "delete", "module": "Leads", "id": first},
            create_lead("B"),
            get_step(channel_id=int(CHANNEL)))
        (it,) = success(disabled, REMOVED)
        check_events(it, live, module_ids(api), CHANNEL, ["Leads"], None)
        assert edited["data"][0]["code"] == deleted["data"][0]["code"] == "SUCCESS"
        (second,) = created_ids(created)
        sent = sent_requests(work)[-2]
        assert sent["method"] == "PATCH"
        assert json.loads(sent["body"]) == {"watch": [{
            "_delete_events": True, "channel_id": CHANNEL,
            "events": ["Leads.edit", "Leads.delete"]}]}
        got = receiver.wait_for(2)
        check_hook(got[1], live, "insert", [second])
        (entry,) = listed["watch"]
        assert entry["values"]["events"] == ["Leads.create"]
        assert entry["values"]["token"] == f"TOKEN_A_{CHANNEL}"
        assert same_instant(entry["values"]["channel_expiry"], expiry)
        quiet(receiver, 2)


class TestDeleteNotification:
    """`delete_notification` with channel_ids removes the channels: nothing more arrives."""

    def test_nothing_after_delete(self, live: Live, api: httpx.Client,
                                  receiver: Receiver, tmp_path: Path) -> None:
        work = tmp_path / "sdk"
        expiry = expiry_in(timedelta(days=2))
        _, created = sdk(live, work,
                         enable(receiver, expiry, enable_item(receiver, expiry),
                                enable_item(receiver, expiry, OTHER,
                                            ("Leads.all", "Contacts.create"))),
                         create_lead("A"))
        (first,) = created_ids(created)
        got = receiver.wait_for(2)
        assert sorted(r.json["channel_id"] for r in got) == [CHANNEL, OTHER]
        deleted, listed, created, edited, removed, contact = sdk(
            live, work,
            {"op": "delete_notification", "channel_ids": [CHANNEL, OTHER]},
            get_step(),
            create_lead("B"),
            {"op": "update", "module": "Leads", "id": first, "values": {"Company": "Nobody"}},
            {"op": "delete", "module": "Leads", "id": first},
            create_contact("C"))
        items = success(deleted, UNSUBSCRIBED, count=3)
        ids = module_ids(api)
        details = sorted((i["details"]["values"]["channel_id"],
                          i["details"]["values"]["resource_id"],
                          i["details"]["values"]["resource_uri"]) for i in items)
        assert details == sorted([
            (int(CHANNEL), str(ids["Leads"]), f"{live.base_url}/crm/v8/Leads"),
            (int(OTHER), str(ids["Leads"]), f"{live.base_url}/crm/v8/Leads"),
            (int(OTHER), str(ids["Contacts"]), f"{live.base_url}/crm/v8/Contacts")])
        assert all(i["details"]["types"]["channel_id"] == "int" for i in items)
        sent = sent_requests(work)[-2]
        assert (sent["method"], sent["params"]) == ("DELETE",
                                                    {"channel_ids": f"{CHANNEL},{OTHER}"})
        assert listed == {"status": 204, "class": None}
        assert wire_entries(api) == []
        assert [r["data"][0]["code"] for r in (edited, removed)] == ["SUCCESS"] * 2
        created_ids(created)
        created_ids(contact)
        quiet(receiver, 2)


class TestErrors:
    """Error items parse into the SDK's APIException with Zoho's codes."""

    def test_unknown_channel_and_bad_expiry(self, live: Live, receiver: Receiver,
                                            tmp_path: Path) -> None:
        past = expiry_in(timedelta(days=-1))
        patched, replaced, trimmed, deleted, expired = sdk(
            live, tmp_path / "sdk",
            {"op": "update_notification", "watch": [{
                "notify_url": notify_url(receiver), "channel_id": CHANNEL,
                "events": ["Contacts.create"]}]},
            {"op": "update_notifications",
             "watch": [enable_item(receiver, expiry_in(timedelta(days=1)))]},
            {"op": "disable_notification", "watch": [{
                "_delete_events": True, "channel_id": CHANNEL, "events": ["Leads.edit"]}]},
            {"op": "delete_notification", "channel_ids": [CHANNEL]},
            enable(receiver, past))
        for result in (patched, replaced, trimmed, deleted):
            assert (result["status"], result["class"]) == (400, "ActionWrapper"), result
            (it,) = result["watch"]
            assert (it["class"], it["status"], it["code"]) == (
                "APIException", "error", "NOT_SUBSCRIBED"), it
        assert (expired["status"], expired["class"]) == (400, "ActionWrapper")
        (it,) = expired["watch"]
        assert (it["class"], it["status"], it["code"]) == ("APIException", "error",
                                                           "INVALID_DATA")
        assert it["details"]["values"]["api_name"] == "channel_expiry"
        quiet(receiver, 0)
