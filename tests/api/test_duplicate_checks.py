"""Unique fields and upsert duplicate checks, answered from record_keys, on both backends.

The keys follow every write (insert, update, delete, subform rows), compare
case-insensitively, cover numbers, and were filled for records older than the table.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crmwatch.catalog import standard_modules
from crmwatch.domain import scopes as sc
from crmwatch.domain.modules import load_modules
from crmwatch.store import open_store, tenants
from crmwatch.store.sql import migrations
from tests.conftest import Live, now_ms, run_flow

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
                       "No_of_Employees")
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


def _rows_keys(url: str) -> list[tuple[Any, ...]]:
    async def main() -> list[tuple[Any, ...]]:
        store = open_store(url)
        await store.start()
        try:
            from crmwatch.store.base import Dynamic

            def flow() -> Any:
                rows = yield Dynamic(lambda d, s: (
                    "SELECT field, value FROM record_keys ORDER BY field", []), "all")
                return [tuple(r) for r in rows]
            return await store.read(flow())  # type: ignore[no-any-return]
        finally:
            await store.close()
    return asyncio.run(main())


def test_migration_fills_the_keys_of_older_records(tmp_path: Path) -> None:
    """Records written before migration 0006 get their keys when it runs (SQLite)."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_migrations (number INTEGER PRIMARY KEY, name TEXT)")
    for number, name, sql in migrations("sqlite"):
        if number < 6:
            conn.executescript(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (number, name))
    conn.execute("INSERT INTO records VALUES (1, 1, 'Leads', NULL, 'x', ?, 0, 0)",
                 ('{"Email": "Old@Example.com", "No_of_Employees": 3, "Email_Opt_Out": true,'
                  ' "Owner": {"id": "1"}}',))
    conn.close()
    url = f"sqlite:///{path}"
    asyncio.run(open_store(url).migrate())
    assert _rows_keys(url) == [("Email", "old@example.com"), ("No_of_Employees", "3")]


def test_migration_fills_the_keys_of_older_records_postgres(pg_cluster: Any) -> None:
    """The same on PostgreSQL: a database migrated up to 0005, a record, then 0006."""
    import asyncpg

    from tests.conftest import new_pg_database

    url = new_pg_database(pg_cluster)  # from the template: every migration applied

    async def rewind() -> None:
        conn = await asyncpg.connect(url)
        await conn.execute("DROP TABLE record_keys; DROP FUNCTION crm_record_keys CASCADE;"
                           "DELETE FROM schema_migrations WHERE number >= 6")
        await conn.execute("INSERT INTO records VALUES (1, 1, 'Leads', NULL, 'x', $1::jsonb,"
                           " 0, 0)", '{"Email": "Old@Example.com", "No_of_Employees": 3,'
                           ' "Email_Opt_Out": true, "Owner": {"id": "1"}}')
        await conn.close()
    asyncio.run(rewind())
    asyncio.run(open_store(url).migrate())
    assert _rows_keys(url) == [("Email", "old@example.com"), ("No_of_Employees", "3")]

