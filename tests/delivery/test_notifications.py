"""Instant notifications end to end: a real server, real database, a real receiver."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crmwatch.delivery import signing
from tests.conftest import Live, start_server
from tests.receiver import Receiver


@pytest.fixture
def live(fast_live: Live) -> Live:
    return fast_live


def watch(api: httpx.Client, url: str, channel_id: str = "1000", events: list[str] | None = None,
          **extra: Any) -> httpx.Response:
    r = api.post("/crm/v8/actions/watch", json={"watch": [{
        "notify_url": url, "channel_id": channel_id, "token": f"tok-{channel_id}",
        "events": events or ["Leads.all"], **extra}]})
    assert r.status_code == 200, r.text
    return r


def create(api: httpx.Client, *names: str) -> list[str]:
    r = api.post("/crm/v8/Leads", json={"data": [{"Last_Name": n} for n in names]})
    assert r.status_code == 201, r.text
    return [d["details"]["id"] for d in r.json()["data"]]


class TestNotificationBody:
    """The webhook is Zoho's body, batched per API call, with our extra headers."""

    def test_insert_update_delete(self, live: Live, api: httpx.Client,
                                  receiver: Receiver) -> None:
        watch(api, receiver.url + "/hook?key1=val1&key2=val2",
              return_affected_field_values=True)
        ids = create(api, "A", "B", "C")
        first = receiver.wait_for(1)[0]
        body = first.json
        assert first.path == "/hook" and first.query == "key1=val1&key2=val2"
        assert first.headers["Content-Type"] == "application/json"
        assert body["operation"] == "insert" and body["ids"] == ids
        assert body["module"] == "Leads" and body["channel_id"] == "1000"
        assert body["token"] == "tok-1000"
        assert body["query_params"] == {"key1": "val1", "key2": "val2"}
        assert body["resource_uri"] == live.base_url + "/crm/v2/Leads"
        assert abs(body["server_time"] - time.time() * 1000) < 60_000
        api.put(f"/crm/v8/Leads/{ids[0]}", json={"data": [{"Company": "Updated Co"}]})
        update = receiver.wait_for(2)[1].json
        assert update["operation"] == "update" and update["ids"] == [ids[0]]
        assert update["affected_fields"] == [{ids[0]: ["Company"]}]
        assert update["affected_values"] == [{"record_id": ids[0],
                                              "values": {"Company": "Updated Co"}}]
        api.delete("/crm/v8/Leads", params={"ids": ",".join(ids[1:])})
        delete = receiver.wait_for(3)[2]
        assert delete.json["operation"] == "delete" and delete.json["ids"] == ids[1:]
        seqs = [int(r.headers["X-Crmwatch-Channel-Seq"]) for r in receiver.received]
        assert seqs == [1, 2, 3]
        assert delete.headers["X-Crmwatch-Previous-Channel-Seq"] == "2"
        assert len({r.headers["X-Crmwatch-Notification-Id"] for r in receiver.received}) == 3
        secrets = api.get("/crmwatch/v1/signing-secret").json()["secrets"]
        assert signing.verify(secrets[0], delete.headers, delete.body, time.time())

    def test_condition_filters_updates(self, live: Live, api: httpx.Client,
                                       receiver: Receiver) -> None:
        watch(api, receiver.url, events=["Leads.edit"], notification_condition=[{
            "type": "field_selection", "module": {"api_name": "Leads"},
            "field_selection": {"field": {"api_name": "Company"}}}])
        (lid,) = create(api, "A")
        api.put(f"/crm/v8/Leads/{lid}", json={"data": [{"Phone": "123"}]})
        api.put(f"/crm/v8/Leads/{lid}", json={"data": [{"Company": "X"}]})
        got = receiver.wait_for(1)
        time.sleep(0.5)
        assert len(receiver.received) == 1 and got[0].json["operation"] == "update"


class TestChannelLifecycle:
    """Deleted, replaced and expired channels behave as the spec says."""

    def test_delete_stops_and_put_moves(self, live: Live, api: httpx.Client,
                                        receiver: Receiver) -> None:
        other = Receiver().start()
        try:
            watch(api, receiver.url)
            create(api, "A")
            receiver.wait_for(1)
            r = api.put("/crm/v8/actions/watch", json={"watch": [{
                "notify_url": other.url + "/moved", "channel_id": "1000",
                "events": ["Leads.create"]}]})
            assert r.status_code == 200
            create(api, "B")
            assert other.wait_for(1)[0].path == "/moved"
            api.delete("/crm/v8/actions/watch", params={"channel_ids": "1000"})
            create(api, "C")
            time.sleep(0.8)
            assert len(receiver.received) == 1 and len(other.received) == 1
        finally:
            other.stop()

    def test_expired_channel_matches_nothing_new(self, live: Live, api: httpx.Client,
                                                 receiver: Receiver) -> None:
        expiry = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
        watch(api, receiver.url, channel_expiry=expiry.isoformat())
        receiver.down = True
        create(api, "while live")
        time.sleep(max(0.0, expiry.timestamp() - time.time()) + 0.3)
        create(api, "after expiry")
        receiver.down = False
        got = receiver.wait_for(1)
        time.sleep(1.0)
        assert len(receiver.received) == 1
        assert got[0].json["ids"] and got[0].json["operation"] == "insert"


class TestDurability:
    """A receiver that is down gets everything once back; the log shows every attempt."""

    def test_receiver_down_then_up(self, live: Live, api: httpx.Client,
                                   receiver: Receiver) -> None:
        watch(api, receiver.url)
        receiver.status = 503
        ids = create(api, "A") + create(api, "B")
        time.sleep(1.0)
        log = api.get("/crmwatch/v1/deliveries").json()["deliveries"]
        assert {d["status"] for d in log} == {"retrying"}
        assert all(d["last_status_code"] == 503 for d in log)
        receiver.status = 200
        deadline = time.time() + 15
        while time.time() < deadline:
            log = api.get("/crmwatch/v1/deliveries").json()["deliveries"]
            if all(d["status"] == "delivered" for d in log):
                break
            time.sleep(0.1)
        assert all(d["status"] == "delivered" for d in log)
        delivered_ids = {i for r in receiver.received for i in r.json["ids"]}
        assert set(ids) <= delivered_ids
        one = api.get(f"/crmwatch/v1/deliveries/{log[0]['id']}").json()["deliveries"][0]
        assert one["attempt_log"][0]["status_code"] == 503
        assert one["attempt_log"][-1]["status_code"] == 200
        assert one["attempt_log"][-1]["request_body"].startswith("{")
        r = api.post(f"/crmwatch/v1/deliveries/{log[0]['id']}/redeliver")
        assert r.status_code == 200
        before = len(receiver.received)
        receiver.wait_for(before + 1)

    def test_dead_after_window_and_replay(self, database_url: str,
                                          receiver: Receiver) -> None:
        server = start_server(database_url, retry_initial_seconds=0.1,
                              retry_max_delay_seconds=0.1, retry_window_seconds=0.5)
        try:
            with server.http() as api:
                watch(api, receiver.url)
                receiver.status = 500
                create(api, "A")
                deadline = time.time() + 10
                while time.time() < deadline:
                    r = api.get("/crmwatch/v1/deliveries", params={"status": "dead"})
                    if r.status_code == 200:
                        break
                    time.sleep(0.1)
                assert r.status_code == 200
                receiver.status = 200
                since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
                r = api.post("/crmwatch/v1/deliveries/redeliver",
                             params={"status": "dead", "since": since})
                assert r.json() == {"redelivered": 1}
                deadline = time.time() + 10
                while time.time() < deadline:
                    if receiver.received and receiver.received[-1].headers.get(
                            "X-Crmwatch-Attempt") and any(
                            x for x in api.get("/crmwatch/v1/deliveries").json()[
                                "deliveries"] if x["status"] == "delivered"):
                        break
                    time.sleep(0.1)
                assert api.get("/crmwatch/v1/deliveries").json()["deliveries"][0][
                    "status"] == "delivered"
        finally:
            server.stop()


class TestIsolationAndOrder:
    """A slow receiver slows only its own channel; one record's changes arrive in order."""

    def test_slow_channel_does_not_delay_fast_one(self, live: Live, api: httpx.Client,
                                                  receiver: Receiver) -> None:
        slow = Receiver(delay=2.0).start()
        try:
            watch(api, slow.url, channel_id="1", events=["Leads.create"])
            watch(api, receiver.url, channel_id="2", events=["Leads.create"])
            start = time.time()
            for i in range(10):
                create(api, f"L{i}")
            receiver.wait_for(10, timeout=5)
            assert time.time() - start < 1.9
        finally:
            slow.stop()

    def test_per_record_order(self, live: Live, api: httpx.Client,
                              receiver: Receiver) -> None:
        receiver.delay = 0.05
        watch(api, receiver.url, events=["Leads.edit"], return_affected_field_values=True)
        a, b = create(api, "A", "B")
        for i in range(15):
            api.put(f"/crm/v8/Leads/{a if i % 3 else b}", json={"data": [{"Company": str(i)}]})
        got = receiver.wait_for(15)
        for rid in (a, b):
            seen = [int(v["values"]["Company"]) for r in got
                    for v in r.json["affected_values"] if v["record_id"] == rid]
            assert seen == sorted(seen)


class TestSafety:
    """A denied address written as a literal is refused when the channel is enabled (names
    are judged at each attempt: tests/delivery/test_targets.py)."""

    def test_metadata_address_is_refused(self, live: Live, api: httpx.Client) -> None:
        r = api.post("/crm/v8/actions/watch", json={"watch": [{
            "notify_url": "http://169.254.169.254/latest/meta-data", "channel_id": "1000",
            "events": ["Leads.all"]}]})
        assert r.status_code == 400
        item = r.json()["watch"][0]
        assert item["code"] == "INVALID_DATA" and "not allowed" in item["message"]
        assert api.get("/crm/v8/actions/watch").status_code == 204


class TestCancelAndRotate:
    """Deleting a channel cancels what it still owed; a rotation signs with both secrets."""

    def test_delete_cancels_pending(self, live: Live, api: httpx.Client,
                                    receiver: Receiver) -> None:
        watch(api, receiver.url)
        receiver.status = 503
        create(api, "A")
        deadline = time.time() + 10
        while time.time() < deadline:
            r = api.get("/crmwatch/v1/deliveries", params={"status": "retrying"})
            if r.status_code == 200:
                break
            time.sleep(0.05)
        api.delete("/crm/v8/actions/watch", params={"channel_ids": "1000"})
        receiver.status = 200
        time.sleep(0.3)
        attempts = len(receiver.received)
        time.sleep(0.8)
        log = api.get("/crmwatch/v1/deliveries").json()["deliveries"]
        assert [d["status"] for d in log] == ["cancelled"]
        assert log[0]["last_error"] == "channel deleted"
        assert len(receiver.received) == attempts  # no attempt after the cancellation

    def test_rotation_signs_with_old_and_new(self, live: Live, api: httpx.Client,
                                             receiver: Receiver) -> None:
        old = api.get("/crmwatch/v1/signing-secret").json()["secrets"]
        assert len(old) == 1 and old[0].startswith("whsec_")
        new = api.post("/crmwatch/v1/signing-secret/rotate").json()["secrets"]
        assert len(new) == 2 and new[1] == old[0]
        time.sleep(5.5)  # the worker re-reads an org's secrets every 5 s
        watch(api, receiver.url)
        create(api, "A")
        got = receiver.wait_for(1)[0]
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        for secret in new:
            assert signing.verify(secret, got.headers, got.body, time.time())
