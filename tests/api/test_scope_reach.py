"""What a token's scopes reach: each answer needs the scope of the data it shows."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from crmwatch.domain import scopes as sc
from crmwatch.store import tenants
from tests.bulk.test_bulk_read import export
from tests.conftest import FAST_DELIVERY, Live, now_ms, run_flow, start_server
from tests.receiver import Receiver


def client_with(live: Live, scopes: str) -> httpx.Client:
    """An HTTP client whose token has exactly `scopes`."""
    creds = live.new_client(scopes)
    token = httpx.post(live.base_url + "/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "refresh_token": creds.refresh_token}).json()["access_token"]
    return httpx.Client(base_url=live.base_url, timeout=30,
                        headers={"Authorization": f"Zoho-oauthtoken {token}"})


def assert_scope_mismatch(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "OAUTH_SCOPE_MISMATCH"


class TestBulkReadJobScope:
    """A job's status and result need READ on the job's module, as creating it does."""

    def test_leads_token_cannot_see_a_contacts_job(self, live: Live, api: httpx.Client) -> None:
        r = api.post("/crm/v8/Contacts", json={"data": [{"Last_Name": "Secret"}]})
        assert r.status_code == 201, r.text
        job, rows = export(api, {"module": {"api_name": "Contacts"}})
        assert any("Secret" in row for row in rows)
        with client_with(live, "ZohoCRM.bulk.READ ZohoCRM.modules.leads.READ") as leads:
            assert_scope_mismatch(leads.get(f"/crm/bulk/v8/read/{job['id']}"))
            assert_scope_mismatch(leads.get(f"/crm/bulk/v8/read/{job['id']}/result"))
        with client_with(live, "ZohoCRM.bulk.READ ZohoCRM.modules.contacts.READ") as contacts:
            assert contacts.get(f"/crm/bulk/v8/read/{job['id']}").status_code == 200
            assert contacts.get(f"/crm/bulk/v8/read/{job['id']}/result").status_code == 200


class TestSigningSecret:
    """Reading the signing secret (which lets one sign webhooks) needs UPDATE, as rotating."""

    def test_read_scope_is_not_enough(self, live: Live) -> None:
        with client_with(live, "ZohoCRM.notifications.READ") as reader:
            assert_scope_mismatch(reader.get("/crmwatch/v1/signing-secret"))
            assert_scope_mismatch(reader.post("/crmwatch/v1/signing-secret/rotate"))
            assert reader.get("/crm/v8/actions/watch").status_code == 204
        for scopes in ("ZohoCRM.notifications.UPDATE", "ZohoCRM.notifications.WRITE",
                       "ZohoCRM.notifications.ALL"):
            with client_with(live, scopes) as updater:
                r = updater.get("/crmwatch/v1/signing-secret")
                assert r.status_code == 200, (scopes, r.text)
                assert r.json()["secrets"][0].startswith("whsec_")


class TestDeliveryLogValues:
    """The delivery log shows record values only to callers that may read the module."""

    def test_values_redacted_without_module_read(self, database_url: str,
                                                 receiver: Receiver) -> None:
        server = start_server(database_url, **FAST_DELIVERY)
        try:
            with server.http() as api:
                r = api.post("/crm/v8/actions/watch", json={"watch": [{
                    "notify_url": receiver.url, "channel_id": "1", "events": ["Leads.all"],
                    "return_affected_field_values": True}]})
                assert r.status_code == 200, r.text
                r = api.post("/crm/v8/Leads", json={"data": [{"Last_Name": "Confidential"}]})
                lead = r.json()["data"][0]["details"]["id"]
                api.put(f"/crm/v8/Leads/{lead}", json={"data": [{"Company": "Secret Co"}]})
                receiver.wait_for(2)
                assert "Secret Co" in receiver.received[1].body.decode()
                deadline = time.time() + 10
                while time.time() < deadline:
                    log = api.get("/crmwatch/v1/deliveries").json()["deliveries"]
                    if len(log) == 2 and {d["status"] for d in log} == {"delivered"}:
                        break
                    time.sleep(0.05)
                update = next(d for d in log if d["operation"] == "update")
                path = f"/crmwatch/v1/deliveries/{update['id']}"

                def attempt(client: httpx.Client) -> dict[str, Any]:
                    r = client.get(path)
                    assert r.status_code == 200, r.text
                    return r.json()["deliveries"][0]["attempt_log"][0]  # type: ignore[no-any-return]

                full = attempt(api)
                assert full["values_redacted"] is False
                assert json.loads(full["request_body"])["affected_values"] == [
                    {"record_id": lead, "values": {"Company": "Secret Co"}}]
                with client_with(server, "ZohoCRM.notifications.READ") as reader:
                    assert_scope_mismatch(reader.get(f"/crm/v8/Leads/{lead}"))
                    shown = attempt(reader)
                assert shown["values_redacted"] is True
                assert "Secret Co" not in shown["request_body"]
                body = json.loads(shown["request_body"])
                assert body["affected_values"] == [{"record_id": lead, "values": {}}]
                assert body["affected_fields"] == [{lead: ["Company"]}]
                assert body["ids"] == [lead] and body["operation"] == "update"
                with client_with(server, "ZohoCRM.notifications.READ "
                                         "ZohoCRM.modules.contacts.READ") as contacts:
                    assert attempt(contacts)["values_redacted"] is True
                with client_with(server, "ZohoCRM.notifications.READ "
                                         "ZohoCRM.modules.leads.READ") as leads:
                    assert "Secret Co" in attempt(leads)["request_body"]
        finally:
            server.stop()


class TestCrmwatchScopeFamily:
    """`ZohoCRM.crmwatch.*` is retired: the extension API takes Zoho's families, and a grant
    stored with the retired scope still works for everything else."""

    def test_not_granted_nor_accepted(self) -> None:
        assert not any(".crmwatch." in s for s in sc.DEFAULT_SCOPES)
        with pytest.raises(ValueError, match="retired"):
            sc.parse_scopes("ZohoCRM.crmwatch.ALL")
        assert sc.parse_granted("ZohoCRM.modules.ALL ZohoCRM.CRMWATCH.changes.READ") == (
            sc.Scope("modules", None, "ALL"),)

    def test_old_grant_still_authenticates(self, live: Live) -> None:
        def flow() -> Any:
            org = yield from tenants.find_org("acme")
            return (yield from tenants.create_client(
                org, "ZohoCRM.modules.ALL ZohoCRM.crmwatch.ALL", "old", now_ms()))
        creds = run_flow(live.database_url, flow())
        token = httpx.post(live.base_url + "/oauth/v2/token", data={
            "grant_type": "refresh_token", "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "refresh_token": creds.refresh_token}).json()["access_token"]
        with httpx.Client(base_url=live.base_url,
                          headers={"Authorization": f"Zoho-oauthtoken {token}"}) as old:
            assert old.get("/crm/v8/Leads").status_code in (200, 204)
            assert old.get("/crmwatch/v1/changes").status_code == 200
            assert_scope_mismatch(old.get("/crmwatch/v1/deliveries"))
