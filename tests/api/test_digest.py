"""`GET /crmwatch/v1/digest`: bucket hashes over the records as the records API shows them."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from crmwatch import digest
from tests.conftest import Live, start_server

URL = "/crmwatch/v1/digest"


def create(api: httpx.Client, module: str, records: list[dict[str, Any]]) -> list[str]:
    ids = []
    for i in range(0, len(records), 100):
        r = api.post(f"/crm/v8/{module}", json={"data": records[i:i + 100]})
        assert r.status_code == 201, r.text
        ids += [d["details"]["id"] for d in r.json()["data"]]
    return ids


def read_by_ids(api: httpx.Client, module: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The records as `GET /crm/v8/{module}?ids=...` shows them."""
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 100):
        r = api.get(f"/crm/v8/{module}", params={"ids": ",".join(ids[i:i + 100])})
        assert r.status_code == 200, r.text
        out.update({rec["id"]: rec for rec in r.json()["data"]})
    return out


def get_digest(api: httpx.Client, module: str = "Leads", **params: Any) -> dict[str, Any]:
    r = api.get(URL, params={"module": module, **params})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json;charset=utf-8"
    return r.json()  # type: ignore[no-any-return]


def some_leads(api: httpx.Client, n: int) -> list[str]:
    return create(api, "Leads", [{
        "Last_Name": f"Lead {i}", "First_Name": "Zoë" if i % 2 else None,
        "Company": f"C{i % 3}", "Email": f"l{i}@example.test",
        "Annual_Revenue": 1000.5 * i, "No_of_Employees": i, "Email_Opt_Out": i % 2 == 0,
        "Description": "line\nnext" if i % 4 == 0 else None,
    } for i in range(n)])


def key(i: str) -> tuple[int, str]:
    return digest.id_key(i)


class TestHashes:
    """Each record's hash is `digest.record_hash` of the record as `GET ?ids=` shows it."""

    def test_per_record_and_whole(self, api: httpx.Client) -> None:
        ids = some_leads(api, 12)
        shown = read_by_ids(api, "Leads", ids)
        body = get_digest(api, buckets=100)
        fields = body["fields"]
        assert body["algorithm"] == digest.ALGORITHM == "crmwatch-digest-1"
        assert body["module"] == "Leads" and body["from_id"] is None and body["to_id"] is None
        assert "id" not in fields and fields == sorted(fields)
        assert set(fields) == set(next(iter(shown.values()))) - {"id"}
        assert [b["from_id"] for b in body["buckets"]] == sorted(ids, key=key)
        for b in body["buckets"]:
            assert b["from_id"] == b["to_id"] and b["count"] == 1
            expected = digest.record_hash(shown[b["from_id"]], fields)
            assert b["hash"] == hashlib.sha256(expected).hexdigest()
        joined = b"".join(digest.record_hash(shown[i], fields) for i in sorted(ids, key=key))
        assert (body["count"], body["hash"]) == (12, hashlib.sha256(joined).hexdigest())
        one = get_digest(api, buckets=1)
        assert one["buckets"] == [{"from_id": min(ids, key=key), "to_id": max(ids, key=key),
                                   "count": 12, "hash": body["hash"]}]
        assert (one["count"], one["hash"]) == (12, body["hash"])

    def test_lookups_counted_by_id(self, api: httpx.Client) -> None:
        account = create(api, "Accounts", [{"Account_Name": "Northwind"}])[0]
        contact = create(api, "Contacts", [{"Last_Name": "Linked",
                                            "Account_Name": {"id": account}}])[0]
        shown = read_by_ids(api, "Contacts", [contact])[contact]
        assert shown["Account_Name"] == {"name": "Northwind", "id": account}
        body = get_digest(api, "Contacts", fields="Account_Name,Owner,Last_Name")
        assert body["fields"] == ["Account_Name", "Last_Name", "Owner"]
        assert body["hash"] == bucket_of(body["fields"], [shown]).hexdigest()
        canon = digest.canonical(shown, body["fields"])
        assert f'"Account_Name":"{account}"'.encode() in canon

    def test_fields_chosen(self, api: httpx.Client) -> None:
        ids = some_leads(api, 3)
        shown = read_by_ids(api, "Leads", ids)
        body = get_digest(api, fields="Company, Email,id,Company", buckets=3)
        assert body["fields"] == ["Company", "Email"]
        for b in body["buckets"]:
            h = digest.record_hash(shown[b["from_id"]], ["Company", "Email"])
            assert b["hash"] == hashlib.sha256(h).hexdigest()

    def test_pages(self, api: httpx.Client) -> None:
        """More records than one page of the server's reads: still every one, in order."""
        ids = create(api, "Leads", [{"Last_Name": f"P{i}", "Company": str(i % 7)}
                                    for i in range(2_150)])
        shown = read_by_ids(api, "Leads", ids)
        body = get_digest(api, buckets=10_000, fields="Last_Name,Company,Modified_Time")
        assert [b["from_id"] for b in body["buckets"]] == sorted(ids, key=key)
        assert body["hash"] == bucket_of(body["fields"], [
            shown[i] for i in sorted(ids, key=key)]).hexdigest()


def bucket_of(fields: list[str], records: list[dict[str, Any]]) -> digest.BucketHasher:
    bucket = digest.BucketHasher(fields)
    for r in records:
        bucket.add(r["id"], r)
    return bucket


class TestBuckets:
    """Buckets partition the range into nearly equal runs of consecutive records."""

    def test_partition(self, api: httpx.Client) -> None:
        ids = sorted(some_leads(api, 23), key=key)
        body = get_digest(api, buckets=5)
        assert [b["count"] for b in body["buckets"]] == [5, 5, 5, 4, 4]
        at = 0
        for b in body["buckets"]:
            assert (b["from_id"], b["to_id"]) == (ids[at], ids[at + b["count"] - 1])
            at += b["count"]
        assert at == 23 and body["count"] == 23
        # a sub-range, ends inclusive, gives the same buckets as asked over it
        sub = get_digest(api, from_id=ids[5], to_id=ids[9], buckets=5)
        assert (sub["from_id"], sub["to_id"], sub["count"]) == (ids[5], ids[9], 5)
        assert get_digest(api, from_id=ids[5], to_id=ids[9])["hash"] == body["buckets"][1]["hash"]
        assert get_digest(api, from_id=ids[22])["count"] == 1
        assert get_digest(api, to_id=ids[0])["count"] == 1
        many = get_digest(api, buckets=1000)
        assert [b["count"] for b in many["buckets"]] == [1] * 23

    def test_one_change_changes_one_bucket(self, api: httpx.Client) -> None:
        ids = sorted(some_leads(api, 20), key=key)
        before = get_digest(api, buckets=4)
        r = api.put(f"/crm/v8/Leads/{ids[7]}", json={"data": [{"Phone": "555-0199"}]})
        assert r.status_code == 200, r.text
        after = get_digest(api, buckets=4)
        changed = [i for i, (a, b) in enumerate(zip(before["buckets"], after["buckets"],
                                                    strict=True)) if a != b]
        assert changed == [1]
        assert [(b["from_id"], b["to_id"], b["count"]) for b in before["buckets"]] == [
            (b["from_id"], b["to_id"], b["count"]) for b in after["buckets"]]
        assert before["hash"] != after["hash"]
        # hashing only fields the change did not touch: nothing changed
        untouched = {"fields": "Last_Name,Company", "buckets": 4}
        assert (get_digest(api, **untouched)["buckets"]
                == get_digest(api, **untouched)["buckets"])

    def test_deleted_absent(self, api: httpx.Client) -> None:
        ids = sorted(some_leads(api, 6), key=key)
        assert api.delete("/crm/v8/Leads", params={"ids": ",".join(ids[2:4])}
                          ).status_code == 200
        body = get_digest(api, buckets=100)
        assert [b["from_id"] for b in body["buckets"]] == ids[:2] + ids[4:]
        assert body["count"] == 4

    def test_empty(self, api: httpx.Client) -> None:
        body = get_digest(api)
        assert (body["count"], body["hash"], body["buckets"]) == (0, digest.EMPTY_HASH, [])
        assert body["fields"] and body["module"] == "Leads"


class TestAccess:
    """Only the caller's org is counted, and only with READ on the module."""

    def test_other_org_never_counted(self, live: Live) -> None:
        other = start_server(live.database_url, org="globex")
        try:
            with live.http() as a, other.http() as b:
                some_leads(a, 5)
                assert get_digest(b)["count"] == 0
                mine = create(b, "Leads", [{"Last_Name": "Globex only"}])
                body = get_digest(b, buckets=10)
                assert [x["from_id"] for x in body["buckets"]] == mine
                assert get_digest(a)["count"] == 5
        finally:
            other.stop()

    def test_scope(self, live: Live, api: httpx.Client) -> None:
        some_leads(api, 1)
        creds = live.new_client("ZohoCRM.modules.contacts.READ")
        token = httpx.post(live.base_url + "/oauth/v2/token", data={
            "grant_type": "refresh_token", "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "refresh_token": creds.refresh_token}).json()["access_token"]
        with httpx.Client(base_url=live.base_url, headers={
                "Authorization": f"Zoho-oauthtoken {token}"}) as narrow:
            r = narrow.get(URL, params={"module": "Leads"})
            assert r.status_code == 401 and r.json()["code"] == "OAUTH_SCOPE_MISMATCH"
            assert narrow.get(URL, params={"module": "Contacts"}).status_code == 200
        r = httpx.get(live.base_url + URL, params={"module": "Leads"})
        assert r.status_code == 401 and r.json()["status"] == "error"


class TestBadInput:
    """Every bad input is a Zoho-shaped 400 naming the parameter."""

    @pytest.mark.parametrize(("params", "code", "detail"), [
        ({}, "REQUIRED_PARAM_MISSING", {"param_name": "module"}),
        ({"module": "No_Such"}, "INVALID_MODULE", {"param_name": "module"}),
        ({"module": "Leads", "from_id": "x"}, "INVALID_DATA", {"param_name": "from_id"}),
        ({"module": "Leads", "to_id": "-1"}, "INVALID_DATA", {"param_name": "to_id"}),
        ({"module": "Leads", "to_id": "9223372036854775808"}, "INVALID_DATA",
         {"param_name": "to_id"}),
        ({"module": "Leads", "from_id": "１２"}, "INVALID_DATA", {"param_name": "from_id"}),
        ({"module": "Leads", "from_id": "5", "to_id": "4"}, "INVALID_DATA",
         {"param_names": ["from_id", "to_id"]}),
        ({"module": "Leads", "buckets": "0"}, "INVALID_DATA", {"param_name": "buckets"}),
        ({"module": "Leads", "buckets": "10001"}, "INVALID_DATA", {"param_name": "buckets"}),
        ({"module": "Leads", "buckets": "two"}, "INVALID_DATA", {"param_name": "buckets"}),
        ({"module": "Leads", "buckets": "²"}, "INVALID_DATA", {"param_name": "buckets"}),
        ({"module": "Leads", "fields": "Company,Nope"}, "INVALID_DATA",
         {"param_name": "fields", "api_name": "Nope"}),
    ])
    def test_refused(self, api: httpx.Client, params: dict[str, str], code: str,
                     detail: dict[str, Any]) -> None:
        r = api.get(URL, params=params)
        assert r.status_code == 400, r.text
        body = r.json()
        assert set(body) == {"code", "details", "message", "status"}
        assert body["status"] == "error" and body["code"] == code
        assert detail.items() <= body["details"].items()
