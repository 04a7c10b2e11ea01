"""What a token's scopes reach: each answer needs the scope of the data it shows."""

from __future__ import annotations

import httpx

from tests.bulk.test_bulk_read import export
from tests.conftest import Live


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
