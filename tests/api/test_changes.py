"""The change journal: every committed change, dense per-org sequence, tenant-isolated."""

from __future__ import annotations

import concurrent.futures

import httpx

from tests.conftest import Live, start_server


def all_changes(api: httpx.Client) -> list[dict]:  # type: ignore[type-arg]
    out: list[dict] = []  # type: ignore[type-arg]
    since = 0
    while True:
        body = api.get("/crmwatch/v1/changes", params={"since": since, "limit": 1000}).json()
        out += body["changes"]
        since = body["info"]["next_since"]
        if not body["info"]["more_records"]:
            return out


class TestChangeFeed:
    """`GET /crmwatch/v1/changes` shows exactly what committed, in order."""

    def test_insert_update_delete_events(self, api: httpx.Client) -> None:
        lid = api.post("/crm/v8/Leads", json={"data": [{"Last_Name": "A", "Company": "C"}]}
                       ).json()["data"][0]["details"]["id"]
        api.put(f"/crm/v8/Leads/{lid}", json={"data": [{"Company": "D", "Last_Name": "A"}]})
        api.delete(f"/crm/v8/Leads/{lid}")
        changes = all_changes(api)
        assert [(c["seq"], c["operation"]) for c in changes] == [
            (1, "insert"), (2, "update"), (3, "delete")]
        assert changes[1]["changed_fields"] == ["Company"]
        assert changes[1]["values"] == {"Company": "D"}
        assert all(c["id"] == lid and c["module"] == "Leads" for c in changes)

    def test_paging_and_bad_parameters(self, api: httpx.Client) -> None:
        api.post("/crm/v8/Leads", json={"data": [{"Last_Name": str(i)} for i in range(5)]})
        page = api.get("/crmwatch/v1/changes", params={"since": 1, "limit": 2}).json()
        assert [c["seq"] for c in page["changes"]] == [2, 3]
        assert page["info"]["more_records"] is True
        for params in ({"since": -1}, {"limit": 0}, {"limit": "x"}, {"limit": 100000}):
            r = api.get("/crmwatch/v1/changes", params=params)
            assert r.status_code == 400 and r.json()["code"] == "INVALID_DATA"

    def test_concurrent_writes_give_a_dense_sequence(self, live: Live) -> None:
        token = live.token()

        def write(i: int) -> int:
            with httpx.Client(base_url=live.base_url, headers={
                    "Authorization": f"Zoho-oauthtoken {token}"}) as c:
                r = c.post("/crm/v8/Leads", json={"data": [{"Last_Name": f"W{i}"},
                                                           {"Last_Name": f"V{i}"}]})
                return r.status_code
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            assert set(pool.map(write, range(64))) == {201}
        with live.http() as api:
            import time

            deadline = time.time() + 10
            while True:
                changes = all_changes(api)
                if len(changes) == 128 or time.time() > deadline:
                    break
                time.sleep(0.05)
        assert [c["seq"] for c in changes] == list(range(1, 129))
        assert len({c["id"] for c in changes}) == 128

    def test_orgs_do_not_see_each_other(self, live: Live) -> None:
        other = start_server(live.database_url, org="globex")
        try:
            with live.http() as a, other.http() as b:
                lid = a.post("/crm/v8/Leads", json={"data": [{"Last_Name": "Mine"}]}
                             ).json()["data"][0]["details"]["id"]
                assert b.get("/crmwatch/v1/changes").json()["changes"] == []
                assert b.get("/crm/v8/Leads").status_code == 204
                assert b.get(f"/crm/v8/Leads/{lid}").status_code == 204
                r = b.put(f"/crm/v8/Leads/{lid}", json={"data": [{"Company": "x"}]})
                assert r.status_code == 400
                r = b.delete(f"/crm/v8/Leads/{lid}")
                assert r.status_code == 400
                assert a.get(f"/crm/v8/Leads/{lid}").json()["data"][0]["Last_Name"] == "Mine"
        finally:
            other.stop()
