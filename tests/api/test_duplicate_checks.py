"""Unique fields and upsert duplicate checks, on both backends.

Key fields (unique fields and default duplicate-check fields) are answered from record_keys,
which follows every write (insert, update, delete), compares case-insensitively, covers
numbers, follows catalog changes and is filled at start for older databases; any other
field is scanned.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crmwatch.api.auth import CATALOG_TTL
from crmwatch.catalog import standard_modules
from crmwatch.domain import scopes as sc
from crmwatch.domain.modules import load_modules, merge_modules
from crmwatch.store import tenants
from tests.conftest import Live, now_ms, run_flow, start_server

BADGES = {"modules": [{
    "api_name": "Badges", "singular_label": "Badge", "plural_label": "Badges",
    "display_field": "Code", "fields": [
        {"api_name": "Code", "label": "Code", "data_type": "text", "unique": True,
         "mandatory": True},
        {"api_name": "Number", "label": "Number", "data_type": "integer", "unique": True},
        {"api_name": "Note", "label": "Note", "data_type": "textarea", "length": 2000}]}]}


@pytest.fixture
def badges(live: Live) -> Iterator[httpx.Client]:
    """A client of an org that has a module with unique fields."""
    def setup() -> Any:
        org = yield from tenants.create_org(
            "uniq", "UTC", standard_modules() + load_modules(BADGES, custom=True), now_ms())
        return (yield from tenants.create_client(
            org, sc.render(sc.parse_scopes(",".join(sc.DEFAULT_SCOPES))), "t", now_ms()))
    creds = run_flow(live.database_url, setup())
    token = httpx.post(live.base_url + "/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "refresh_token": creds.refresh_token}).json()["access_token"]
    with httpx.Client(base_url=live.base_url, timeout=30,
                      headers={"Authorization": f"Zoho-oauthtoken {token}"}) as c:
        yield c


def upsert(api: httpx.Client, module: str, record: dict[str, Any], *fields: str
           ) -> dict[str, Any]:
    body: dict[str, Any] = {"data": [record]}
    if fields:
        body["duplicate_check_fields"] = list(fields)
    r = api.post(f"/crm/v8/{module}/upsert", json=body)
    return r.json()["data"][0]  # type: ignore[no-any-return]


def test_duplicate_checks_follow_every_write(api: httpx.Client) -> None:
    first = upsert(api, "Leads", {"Last_Name": "A", "Email": "Ann@Example.com",
                                  "No_of_Employees": 12}, "Email")
    assert first["action"] == "insert"
    a = first["details"]["id"]
    again = upsert(api, "Leads", {"Last_Name": "A", "Email": "ann@example.COM"}, "Email")
    assert (again["action"], again["details"]["id"]) == ("update", a)
    by_number = upsert(api, "Leads", {"Last_Name": "N", "No_of_Employees": 12},
                       "No_of_Employees")  # no key field: scanned
    assert (by_number["action"], by_number["details"]["id"]) == ("update", a)
    api.put(f"/crm/v8/Leads/{a}", json={"data": [{"Email": "bea@example.com"}]})
    moved = upsert(api, "Leads", {"Last_Name": "B", "Email": "BEA@example.com"}, "Email")
    assert (moved["action"], moved["details"]["id"]) == ("update", a)
    fresh = upsert(api, "Leads", {"Last_Name": "C", "Email": "ann@example.com"}, "Email")
    assert fresh["action"] == "insert"
    api.delete(f"/crm/v8/Leads/{a}")
    gone = upsert(api, "Leads", {"Last_Name": "D", "Email": "bea@example.com"})
    assert gone["action"] == "insert"  # the module's default check, Email
    long = "x" * 300  # past record_keys' length: the scan still finds it
    made = upsert(api, "Leads", {"Last_Name": "L", "Description": long}, "Description")
    found = upsert(api, "Leads", {"Last_Name": "L", "Description": long.upper()},
                   "Description")
    assert (found["action"], found["details"]["id"]) == ("update", made["details"]["id"])


def test_unique_fields_are_enforced(badges: httpx.Client) -> None:
    r = badges.post("/crm/v8/Badges", json={"data": [{"Code": "AB-1", "Number": 7}]})
    assert r.status_code == 201, r.text
    b = r.json()["data"][0]["details"]["id"]
    r = badges.post("/crm/v8/Badges", json={"data": [
        {"Code": "ab-1"}, {"Code": "AB-2", "Number": 7}, {"Code": "AB-3", "Number": 8}]})
    assert r.status_code == 207, r.text
    dup_code, dup_number, ok = r.json()["data"]
    assert dup_code["code"] == "DUPLICATE_DATA"
    assert dup_code["details"]["api_name"] == "Code"
    assert dup_code["details"]["duplicate_record"]["id"] == b
    assert dup_number["details"]["api_name"] == "Number"
    assert ok["status"] == "success"
    r = badges.put(f"/crm/v8/Badges/{b}", json={"data": [{"Code": "AB-1", "Number": 7}]})
    assert r.status_code == 200, r.text  # its own values are no duplicate
    r = badges.put(f"/crm/v8/Badges/{b}", json={"data": [{"Number": 8}]})
    assert r.json()["data"][0]["code"] == "DUPLICATE_DATA"
    upserted = upsert(badges, "Badges", {"Code": "ab-1", "Note": "n"})
    assert (upserted["action"], upserted["details"]["id"]) == ("update", b)


def _sql(url: str, sql: str, fetch: bool = True) -> list[tuple[Any, ...]]:
    """Run one statement on the database directly (outside the store), in autocommit."""
    async def main() -> list[tuple[Any, ...]]:
        if url.startswith("postgresql"):
            import asyncpg

            conn = await asyncpg.connect(url)
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()
        db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return [tuple(r) for r in db.execute(sql).fetchall()]
        finally:
            db.close()
    return asyncio.run(main())


def _keys(url: str, module: str) -> list[tuple[Any, ...]]:
    return sorted(_sql(url, "SELECT field, value FROM record_keys WHERE module = "
                            f"'{module}' ORDER BY field, value"))


def test_only_key_fields_are_indexed(live: Live, api: httpx.Client) -> None:
    """Leads' key field is Email (its default duplicate check): no other value is stored."""
    r = api.post("/crm/v8/Leads", json={"data": [
        {"Last_Name": "K", "Email": "Kay@Example.com", "No_of_Employees": 3,
         "Company": "Kay Co", "Email_Opt_Out": True}]})
    assert r.status_code == 201, r.text
    assert _keys(live.database_url, "Leads") == [("Email", "kay@example.com")]
    assert ("Leads", "Email") in _sql(live.database_url, "SELECT module, field FROM key_fields")


def test_a_field_made_unique_later_is_enforced(live: Live, badges: httpx.Client) -> None:
    """`Note` becomes unique over records that exist: their values are indexed at once, and
    a duplicate is refused; when it stops being unique, its keys go."""
    r = badges.post("/crm/v8/Badges", json={"data": [{"Code": "N-1", "Note": "Same Note"}]})
    assert r.status_code == 201, r.text
    first = r.json()["data"][0]["details"]["id"]
    assert ("Note", "same note") not in _keys(live.database_url, "Badges")

    def set_unique(unique: bool) -> Any:
        org = yield from tenants.find_org("uniq")
        current, _ = yield from tenants.load_catalog(org.id)
        doc = {"modules": [{**BADGES["modules"][0], "fields": [
            {**f, "unique": unique} if f["api_name"] == "Note" else f
            for f in BADGES["modules"][0]["fields"]]}]}
        merged = merge_modules(current, load_modules(doc, custom=True))
        return (yield from tenants.save_catalog(org, merged, now_ms()))
    run_flow(live.database_url, set_unique(True))
    assert ("Note", "same note") in _keys(live.database_url, "Badges")
    time.sleep(CATALOG_TTL + 0.2)  # the server sees the new catalog
    r = badges.post("/crm/v8/Badges", json={"data": [{"Code": "N-2", "Note": "same NOTE"}]})
    item = r.json()["data"][0]
    assert item["code"] == "DUPLICATE_DATA", r.text
    assert item["details"]["duplicate_record"]["id"] == first
    run_flow(live.database_url, set_unique(False))
    assert ("Note", "same note") not in _keys(live.database_url, "Badges")
    time.sleep(CATALOG_TTL + 0.2)
    r = badges.post("/crm/v8/Badges", json={"data": [{"Code": "N-3", "Note": "same NOTE"}]})
    assert r.status_code == 201, r.text


def test_keys_are_filled_at_start_for_older_databases(database_url: str) -> None:
    """A database whose key fields are not recorded yet (migrated from before migration
    0006 wrote them, or whose key-field rules changed) gets them when the server starts."""
    live = start_server(database_url)
    try:
        with live.http() as api:
            r = api.post("/crm/v8/Leads", json={"data": [{"Last_Name": "O",
                                                          "Email": "Old@Example.com"}]})
            assert r.status_code == 201, r.text
            old = r.json()["data"][0]["details"]["id"]
    finally:
        live.stop()
    _sql(database_url, "DELETE FROM record_keys", fetch=False)
    _sql(database_url, "DELETE FROM key_fields", fetch=False)
    live = start_server(database_url, org=None)
    try:
        assert _keys(database_url, "Leads") == [("Email", "old@example.com")]
        creds = live_client(live, database_url)
        token = httpx.post(live.base_url + "/oauth/v2/token", data={
            "grant_type": "refresh_token", "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "refresh_token": creds.refresh_token}).json()["access_token"]
        with httpx.Client(base_url=live.base_url, timeout=30,
                          headers={"Authorization": f"Zoho-oauthtoken {token}"}) as api:
            found = upsert(api, "Leads", {"Last_Name": "O2", "Email": "old@example.COM"})
        assert (found["action"], found["details"]["id"]) == ("update", old)
    finally:
        live.stop()


def live_client(live: Live, database_url: str) -> tenants.Credentials:
    def flow() -> Any:
        org = yield from tenants.find_org("acme")
        return (yield from tenants.create_client(
            org, sc.render(sc.parse_scopes(",".join(sc.DEFAULT_SCOPES))), "t", now_ms()))
    return run_flow(database_url, flow())  # type: ignore[no-any-return]


def test_key_field_changes_rule() -> None:
    modules = standard_modules() + load_modules(BADGES, custom=True)
    add, drop = tenants.key_field_changes({("Leads", "Email"), ("Badges", "Gone")}, modules)
    assert ("Badges", "Code") in add and ("Badges", "Number") in add
    assert ("Leads", "Email") not in add and ("Badges", "Note") not in add
    assert drop == {("Badges", "Gone")}
    leads = next(m for m in modules if m.api_name == "Leads")
    assert leads.keyed == frozenset({"Email"})
