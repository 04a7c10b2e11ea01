"""The delivery log takes whatever a receiver answers, and one bad row never jams it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from crmwatch.catalog import standard_modules
from crmwatch.config import Settings
from crmwatch.delivery.worker import DeliveryService
from crmwatch.store import deliveries as store_deliveries
from crmwatch.store import open_store, tenants
from crmwatch.store.deliveries import Result
from tests.conftest import FAST_DELIVERY, Live, now_ms, run_flow
from tests.receiver import Receiver


@pytest.fixture
def live(fast_live: Live) -> Live:
    return fast_live


def token_for(live: Live, org: str) -> httpx.Client:
    """A client of a second org (created here) with every scope."""
    run_flow(live.database_url, tenants.create_org(org, "UTC", standard_modules(), now_ms()))
    creds = live.new_client("ZohoCRM.modules.ALL,ZohoCRM.notifications.ALL", org=org)
    token = httpx.post(live.base_url + "/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "refresh_token": creds.refresh_token}).json()["access_token"]
    return httpx.Client(base_url=live.base_url, timeout=30,
                        headers={"Authorization": f"Zoho-oauthtoken {token}"})


def watch(api: httpx.Client, url: str, channel_id: str) -> None:
    r = api.post("/crm/v8/actions/watch", json={"watch": [{
        "notify_url": url, "channel_id": channel_id, "events": ["Leads.all"]}]})
    assert r.status_code == 200, r.text


def create(api: httpx.Client, name: str) -> None:
    r = api.post("/crm/v8/Leads", json={"data": [{"Last_Name": name}]})
    assert r.status_code == 201, r.text


def settled(api: httpx.Client, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The log once `count` deliveries are delivered (fails with the log otherwise)."""
    deadline = time.time() + timeout
    log: list[dict[str, Any]] = []
    while time.time() < deadline:
        r = api.get("/crmwatch/v1/deliveries")
        log = r.json()["deliveries"] if r.status_code == 200 else []
        if sum(d["status"] == "delivered" for d in log) >= count:
            return log
        time.sleep(0.1)
    raise AssertionError(f"not settled: {log}")


class TestAnswersOfAnyBytes:
    """A receiver answering NUL bytes or invalid UTF-8 is logged, and so is everyone else."""

    def test_nul_and_invalid_utf8_bodies(self, live: Live, api: httpx.Client,
                                         receiver: Receiver) -> None:
        bad = Receiver(answer=b"ok\x00then\xff\xfe end").start()
        other_org = token_for(live, "beta")
        try:
            watch(api, bad.url, "1")
            watch(api, receiver.url, "2")
            watch(other_org, receiver.url, "3")
            for i in range(3):
                create(api, f"A{i}")
                create(other_org, f"B{i}")
            log = settled(api, 6)
            assert {d["channel_id"] for d in log} == {"1", "2"}
            assert all(d["status"] == "delivered" for d in log)
            assert {d["status"] for d in settled(other_org, 3)} == {"delivered"}
            one = next(d for d in log if d["channel_id"] == "1")
            entry = api.get(f"/crmwatch/v1/deliveries/{one['id']}").json()["deliveries"][0]
            assert entry["attempt_log"][-1]["response_body"] == "ok\ufffdthen\ufffd\ufffd end"
            # still logging afterwards
            create(api, "later")
            create(other_org, "later")
            settled(api, 8)
            settled(other_org, 4)
        finally:
            other_org.close()
            bad.stop()


class TestOneBadRow:
    """A row no backend can store is written in a reduced form; the rest of its batch as is."""

    def test_batch_with_a_row_that_cannot_be_written(self, live: Live, api: httpx.Client,
                                                     receiver: Receiver) -> None:
        receiver.status = 503
        watch(api, receiver.url, "1")
        for i in range(3):
            create(api, f"A{i}")
        deadline = time.time() + 10
        while time.time() < deadline:
            r = api.get("/crmwatch/v1/deliveries", params={"status": "retrying"})
            if r.status_code == 200 and len(r.json()["deliveries"]) == 3:
                break
            time.sleep(0.05)
        live.stop()  # its workers would race ours
        ids = sorted(int(d["id"]) for d in r.json()["deliveries"])
        now = now_ms()

        def result(delivery_id: int, status_code: int) -> Result:
            return Result(delivery_id, "retrying", 7, now + 60_000, now, now, receiver.url,
                          "{}", status_code, 1.0, "HTTP 503", "busy")

        # A status code beyond 64 bits overflows on both backends.
        batch = [result(ids[0], 503), result(ids[1], 2**70), result(ids[2], 503)]

        async def flush() -> None:
            store = open_store(live.database_url)
            if hasattr(store, "run_sequencer"):
                store.run_sequencer = False
            await store.start()
            try:
                service = DeliveryService(Settings(database_url=live.database_url,
                                                   **FAST_DELIVERY), store)
                service._results = list(batch)
                await service._flush()
                assert service._results == []
                for delivery_id in ids:
                    assert delivery_id not in service._unflushed
            finally:
                await store.close()

        asyncio.run(flush())
        entries = [run_flow(live.database_url, store_deliveries.get_log(live.org_id, i),
                            write=False) for i in ids]
        assert [e["attempts"] for e in entries] == [7, 7, 7]
        good = entries[0]["attempt_log"][-1]
        assert good["attempt"] == 7 and good["status_code"] == 503
        assert good["response_body"] == "busy"
        reduced = entries[1]["attempt_log"][-1]
        assert reduced["attempt"] == 7 and reduced["status_code"] is None
        assert reduced["request_body"] == "" and reduced["response_body"] is None
        assert "could not be logged" in reduced["error"]
        assert entries[2]["attempt_log"][-1]["response_body"] == "busy"
