"""The v2 SDK's notifications (zcrmsdk `NotificationOperations`), unmodified, live.

docs clients.md section 2.2 item 6: the v2 SDK's model declares `channel_id` a Long, so it
sends a JSON number, and watches a whole module with `Leads.all`. Each SDK session runs in a
child process (tests/clients/sdk2_notify_driver.py); webhooks go to a real receiver.
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
from tests.receiver import Receiver

CHANNEL = 1000000068001
SUBSCRIBED = "Successfully subscribed for actions-watch of the given module"
UNSUBSCRIBED = "Successfully un-subscribed from actions-watch"


@pytest.fixture
def live(fast_live: Live) -> Live:
    return fast_live


def sdk(live: Live, workdir: Path, *steps: dict[str, Any]) -> list[dict[str, Any]]:
    """One SDK session running `steps`; checks that hold for every session."""
    report = run_driver("sdk2_notify_driver.py", live, workdir, list(steps))
    assert [r for r in report["results"] if "exception" in r] == []
    assert logged_errors(workdir) == []
    assert report["environment_url"] == live.base_url
    for request in logged_requests(workdir):
        assert request["url"].startswith(live.base_url + "/crm/v2/"), request
    return report["results"]  # type: ignore[no-any-return]


def same_instant(a: str, b: datetime | str) -> bool:
    other = b if isinstance(b, datetime) else datetime.fromisoformat(b)
    return datetime.fromisoformat(a) == other


class TestNumericChannelId:
    """Channels addressed by a numeric channel_id, from enable to disable."""

    def test_enable_deliver_disable(self, live: Live, api: httpx.Client,
                                    receiver: Receiver, tmp_path: Path) -> None:
        """Enabled with a JSON-number channel_id and `Leads.all`: creates and edits arrive
        with `channel_id` the string of that number; disable_notifications stops them."""
        work = tmp_path / "sdk"
        expiry = (datetime.now(UTC) + timedelta(hours=6)).replace(microsecond=0)
        url = receiver.url + "/zoho/notify"
        enabled, created, listed = sdk(
            live, work,
            {"op": "enable_notifications", "watch": [{
                "channel_expiry": expiry.isoformat(), "notify_url": url,
                "channel_id": CHANNEL, "events": ["Leads.all"], "token": "tok"}]},
            {"op": "create", "module": "Leads", "records": [{"Last_Name": "Numeric"}]},
            {"op": "get_notification_details", "params": {"channel_id": CHANNEL}})
        # On the wire: channel_id a JSON number, as clients.md 2.2 item 6 shows.
        (sent, _) = sent_requests(work)
        assert (sent["method"], sent["url"]) == ("POST", live.base_url + "/crm/v2/actions/watch")
        assert "content-type" not in {k.lower() for k in sent["headers"]}
        body = json.loads(sent["body"])["watch"][0]
        assert body["channel_id"] == CHANNEL and isinstance(body["channel_id"], int)
        assert body["events"] == ["Leads.all"]
        # The reply parsed: one SuccessResponse whose details.events are Notification objects.
        assert (enabled["status"], enabled["class"]) == (200, "ActionWrapper")
        (it,) = enabled["watch"]
        assert (it["class"], it["status"], it["code"], it["message"]) == (
            "SuccessResponse", "success", "SUCCESS", SUBSCRIBED)
        assert it["events_class"] == ["Notification"]
        (event,) = it["events"]
        modules = api.get("/crm/v2/settings/modules").json()["modules"]
        leads_id = next(m["id"] for m in modules if m["api_name"] == "Leads")
        assert event["values"]["channel_id"] == CHANNEL and event["types"]["channel_id"] == "int"
        assert event["values"]["resource_name"] == "Leads"
        assert event["values"]["resource_id"] == leads_id  # a String in the v2 model
        assert event["values"]["resource_uri"] == live.base_url + "/crm/v2/Leads"
        assert event["types"]["channel_expiry"] == "datetime"
        assert same_instant(event["values"]["channel_expiry"], expiry)
        # get_notification_details by the numeric id.
        assert (listed["status"], listed["class"]) == (200, "ResponseWrapper")
        (entry,) = listed["watch"]
        assert entry["values"]["channel_id"] == CHANNEL
        assert sorted(entry["values"]["events"]) == ["Leads.create", "Leads.delete",
                                                     "Leads.edit"]
        assert (entry["values"]["notify_url"], entry["values"]["token"]) == (url, "tok")
        assert listed["info"]["values"]["count"] == 1
        # The SDK's create is delivered, channel_id as the string of the number.
        (item,) = created["data"]
        rid = item["details"]["values"]["id"]
        (got,) = receiver.wait_for(1)
        assert got.path == "/zoho/notify"
        assert got.headers["Content-Type"].startswith("application/json")
        assert got.json["channel_id"] == str(CHANNEL)
        assert (got.json["operation"], got.json["ids"]) == ("insert", [rid])
        assert (got.json["module"], got.json["token"]) == ("Leads", "tok")
        assert "affected_fields" not in got.json  # the v2 model cannot ask for them
        # Leads.all includes edits.
        r = api.put(f"/crm/v2/Leads/{rid}", json={"data": [{"Company": "Edited"}]})
        assert r.status_code == 200, r.text
        edit = receiver.wait_for(2)[1].json
        assert (edit["operation"], edit["ids"], edit["channel_id"]) == (
            "update", [rid], str(CHANNEL))
        # disable_notifications by the numeric id: gone, and nothing more arrives.
        disabled, again, after = sdk(
            live, work,
            {"op": "disable_notifications", "channel_ids": [CHANNEL]},
            {"op": "create", "module": "Leads", "records": [{"Last_Name": "Late"}]},
            {"op": "get_notification_details", "params": {}})
        assert sent_requests(work)[-2]["params"] == {"channel_ids": str(CHANNEL)}
        assert (disabled["status"], disabled["class"]) == (200, "ActionWrapper")
        (it,) = disabled["watch"]
        assert (it["class"], it["code"], it["message"]) == (
            "SuccessResponse", "SUCCESS", UNSUBSCRIBED)
        assert it["details"]["values"]["channel_id"] == CHANNEL
        assert again["status"] == 201
        assert after == {"status": 204, "class": None}
        time.sleep(1.0)
        assert len(receiver.received) == 2

    def test_merge_remove_and_replace(self, live: Live, api: httpx.Client,
                                      receiver: Receiver, tmp_path: Path) -> None:
        """PATCH (merge), PATCH with `_delete_events` and PUT, all with the numeric id."""
        work = tmp_path / "sdk"
        expiry = (datetime.now(UTC) + timedelta(hours=6)).replace(microsecond=0)
        url = receiver.url + "/zoho/notify"
        enabled, merged, removed, listed, lead, contact = sdk(
            live, work,
            {"op": "enable_notifications", "watch": [{
                "channel_expiry": expiry.isoformat(), "notify_url": url,
                "channel_id": CHANNEL, "events": ["Leads.all"], "token": "tok"}]},
            {"op": "update_notification", "watch": [{
                "notify_url": url, "channel_id": CHANNEL, "events": ["Contacts.create"]}]},
            {"op": "disable_notification", "watch": [{
                "_delete_events": True, "channel_id": CHANNEL, "events": ["Leads.edit"]}]},
            {"op": "get_notification_details", "params": {}},
            {"op": "create", "module": "Leads", "records": [{"Last_Name": "X"}]},
            {"op": "create", "module": "Contacts", "records": [{"Last_Name": "Y"}]})
        bodies = [json.loads(r["body"])["watch"][0] for r in sent_requests(work)[:3]]
        assert [b["channel_id"] for b in bodies] == [CHANNEL] * 3  # JSON numbers
        assert bodies[2]["_delete_events"] is True
        messages = [(r["watch"][0]["code"], r["watch"][0]["message"])
                    for r in (enabled, merged, removed)]
        assert messages == [("SUCCESS", SUBSCRIBED),
                            ("SUCCESS", "Successfully updated the subscribe details"),
                            ("SUCCESS", "Successfully removed the subscribe details")]
        entries = {e["values"]["resource_name"]: e["values"] for e in listed["watch"]}
        assert sorted(entries["Leads"]["events"]) == ["Leads.create", "Leads.delete"]
        assert entries["Contacts"]["events"] == ["Contacts.create"]
        assert {e["channel_id"] for e in entries.values()} == {CHANNEL}
        assert {e["token"] for e in entries.values()} == {"tok"}
        lead_id = lead["data"][0]["details"]["values"]["id"]
        contact_id = contact["data"][0]["details"]["values"]["id"]
        # Edits were removed: this one is not delivered.
        assert api.put(f"/crm/v2/Leads/{lead_id}",
                       json={"data": [{"Company": "Unseen"}]}).status_code == 200
        got = {(r.json["module"], r.json["operation"]): r.json for r in receiver.wait_for(2)}
        assert got[("Leads", "insert")]["ids"] == [lead_id]
        assert got[("Contacts", "insert")]["ids"] == [contact_id]
        assert {(b["channel_id"], b["token"]) for b in got.values()} == {(str(CHANNEL), "tok")}
        # update_notifications (PUT) to edits only, with a new token.
        replaced, late = sdk(
            live, work,
            {"op": "update_notifications", "watch": [{
                "channel_expiry": expiry.isoformat(), "notify_url": url,
                "channel_id": CHANNEL, "events": ["Leads.edit"], "token": "t2"}]},
            {"op": "create", "module": "Leads", "records": [{"Last_Name": "Z"}]})
        assert (replaced["watch"][0]["code"], late["status"]) == ("SUCCESS", 201)
        assert api.put(f"/crm/v2/Leads/{lead_id}",
                       json={"data": [{"Company": "Seen"}]}).status_code == 200
        edit = receiver.wait_for(3)[2].json
        assert (edit["operation"], edit["ids"]) == ("update", [lead_id])
        assert (edit["channel_id"], edit["token"]) == (str(CHANNEL), "t2")
        time.sleep(1.0)
        assert len(receiver.received) == 3
