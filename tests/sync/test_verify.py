"""`crmwatch sync verify` against a real server and real mirror databases (SQLite, PostgreSQL).

The mirrors are built through the mirror interface from records read through the API (as the
sync writes them), then changed behind the sync's back with plain SQL.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from crmwatch.sync import verify
from crmwatch.sync.cells import specs_from_metadata
from crmwatch.sync.mirror import open_mirror
from tests.conftest import Live, new_pg_database, start_server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def mirror_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mirror.db'}"
    return new_pg_database(request.getfixturevalue("pg_cluster"))


@pytest.fixture
def sqlite_live(tmp_path: Path) -> Iterator[Live]:
    server = start_server(f"sqlite:///{tmp_path / 'crm.db'}")
    try:
        yield server
    finally:
        server.stop()


def create(api: httpx.Client, n: int) -> list[str]:
    account = api.post("/crm/v8/Accounts", json={"data": [{"Account_Name": "Northwind"}]}
                       ).json()["data"][0]["details"]["id"]
    ids: list[str] = []
    for start in range(0, n, 100):
        r = api.post("/crm/v8/Leads", json={"data": [
            {"Last_Name": f"L{i}", "Company": "Acme", "Email": f"l{i}@x.test",
             "Annual_Revenue": 1000.5 + i, "No_of_Employees": i, "Email_Opt_Out": i % 2 == 0}
            for i in range(start, min(n, start + 100))]})
        assert r.status_code == 201, r.text
        ids += [d["details"]["id"] for d in r.json()["data"]]
    r = api.post("/crm/v8/Contacts", json={"data": [{"Last_Name": "C", "Account_Name": {
        "id": account}}]})
    assert r.status_code == 201
    return ids


def build_mirror(api: httpx.Client, url: str, module: str = "Leads") -> None:
    """A mirror of `module` as the sync makes it: fields from the metadata, records by id."""
    fields = api.get("/crm/v8/settings/fields", params={"module": module}).json()["fields"]
    records: list[dict[str, Any]] = []
    token = None
    while True:
        params: dict[str, Any] = {"per_page": 200, "sort_by": "id", "sort_order": "asc"}
        if token:
            params["page_token"] = token
        r = api.get(f"/crm/v8/{module}", params=params)
        if r.status_code == 204:
            break
        records += r.json()["data"]
        if not r.json()["info"]["more_records"]:
            break
        token = r.json()["info"]["next_page_token"]

    async def go() -> None:
        mirror = await open_mirror(url)
        try:
            await mirror.ensure_module(module, specs_from_metadata(fields))
            if records:
                await mirror.apply_fetched(module, records)
        finally:
            await mirror.close()
    asyncio.run(go())


def sql(url: str, statement: str, *args: Any) -> None:
    """Change the mirror behind the sync's back."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            conn.execute(statement, args)
            conn.commit()
        finally:
            conn.close()
        return
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            n = iter(range(1, 100))
            await conn.execute("".join(f"${next(n)}" if c == "?" else c for c in statement),
                               *args)
        finally:
            await conn.close()
    asyncio.run(go())


def run_verify(live: Live, url: str, *args: str, server: str | None = None
               ) -> tuple[int, str, str]:
    env = {"ZOHO_API_URL": server or live.base_url, "ZOHO_CLIENT_ID": live.client_id,
           "ZOHO_CLIENT_SECRET": live.client_secret, "ZOHO_REFRESH_TOKEN": live.refresh_token}
    result = CliRunner().invoke(verify.command, ["--database", url, "--settle", "0", *args],
                                env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def tamper(api: httpx.Client, url: str, ids: list[str]) -> dict[str, str]:
    """One row deleted, one changed in one field, one extra, one deleted at the source only."""
    sql(url, 'DELETE FROM "Leads" WHERE id = ?', ids[3])
    row = api.get("/crm/v8/Leads", params={"ids": ids[7]}).json()["data"][0]
    row["Company"] = "Changed behind its back"
    sql(url, 'UPDATE "Leads" SET "Company" = ?, _record = ? WHERE id = ?',
        row["Company"], json.dumps(row), ids[7])
    extra = str(int(max(ids, key=int)) + 1000)
    sql(url, 'INSERT INTO "Leads" (id, _record, _synced_at) VALUES (?, ?, ?)', extra,
        json.dumps({**row, "id": extra}), "2026-01-01T00:00:00+00:00")
    assert api.delete(f"/crm/v8/Leads/{ids[11]}").status_code == 200
    return {ids[3]: "missing", ids[7]: "stale", extra: "extra", ids[11]: "extra"}


def listed(out: str) -> dict[str, str]:
    lines = [ln.split() for ln in out.splitlines() if ln.strip()]
    assert all(ln[0] == "Leads" and len(ln) == 3 for ln in lines), out
    return {ln[1]: ln[2] for ln in lines}


class TestVerify:
    """Equal mirrors pass; rows changed behind the sync's back are named exactly."""

    def test_equal_then_differences_then_repair(self, sqlite_live: Live, mirror_url: str
                                                ) -> None:
        live = sqlite_live
        with live.http() as api:
            ids = create(api, 250)
            build_mirror(api, mirror_url)
            code, out, err = run_verify(live, mirror_url)
            assert (code, out) == (0, ""), err
            assert "250 records" in err and "by digest" in err and "equal" in err

            expected = tamper(api, mirror_url, ids)
            code, out, err = run_verify(live, mirror_url)
            assert code == 1, err
            assert listed(out) == expected
            assert "by digest in 4 requests" in err

            code, out, _ = run_verify(live, mirror_url, "--json")
            assert code == 1
            items = [json.loads(ln) for ln in out.splitlines()]
            assert {i["id"]: i["kind"] for i in items} == expected
            assert all(i["module"] == "Leads" for i in items)

            code, out, _ = run_verify(live, mirror_url, "--plain-zoho")
            assert (code, listed(out)) == (1, expected)

            code, out, err = run_verify(live, mirror_url, "--repair")
            assert code == 0, err
            assert listed(out) == expected and "repaired" in err
            code, out, err = run_verify(live, mirror_url)
            assert (code, out) == (0, ""), err
            code, out, err = run_verify(live, mirror_url, "--plain-zoho")
            assert (code, out) == (0, ""), err
            assert "by records" in err

    def test_plain_zoho_repair(self, sqlite_live: Live, mirror_url: str) -> None:
        live = sqlite_live
        with live.http() as api:
            ids = create(api, 60)
            build_mirror(api, mirror_url)
            expected = tamper(api, mirror_url, ids)
            code, out, err = run_verify(live, mirror_url, "--plain-zoho", "--repair")
            assert code == 0, err
            assert listed(out) == expected and "repaired" in err
            code, out, err = run_verify(live, mirror_url, "--plain-zoho")
            assert (code, out) == (0, ""), err
            code, out, err = run_verify(live, mirror_url)
            assert (code, out) == (0, ""), err

    def test_lookup_rename_is_no_difference(self, sqlite_live: Live, tmp_path: Path) -> None:
        """A Contact counts its Account by id: renaming the Account changes nothing."""
        url = f"sqlite:///{tmp_path / 'm.db'}"
        with sqlite_live.http() as api:
            create(api, 1)
            build_mirror(api, url, "Contacts")
            account = api.get("/crm/v8/Accounts").json()["data"][0]["id"]
            api.put(f"/crm/v8/Accounts/{account}", json={"data": [{"Account_Name": "Renamed"}]})
        code, out, err = run_verify(sqlite_live, url, "--module", "Contacts")
        assert (code, out) == (0, ""), err


class TestCannotTell:
    """Exit 2 when the answer cannot be known."""

    def test_server_down(self, sqlite_live: Live, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'm.db'}"
        with sqlite_live.http() as api:
            create(api, 3)
            build_mirror(api, url)
        code, out, err = run_verify(sqlite_live, url, server="http://127.0.0.1:9")
        assert (code, out) == (2, "") and "could not tell" in err

    def test_mirror_missing(self, sqlite_live: Live, tmp_path: Path) -> None:
        missing = tmp_path / "none.db"
        code, _, err = run_verify(sqlite_live, f"sqlite:///{missing}")
        assert code == 2 and "no mirror" in err
        assert not missing.exists()  # nothing created

    def test_module_not_mirrored(self, sqlite_live: Live, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'm.db'}"
        with sqlite_live.http() as api:
            build_mirror(api, url)
        code, _, err = run_verify(sqlite_live, url, "--module", "Deals")
        assert code == 2 and "not mirrored" in err


class TestReadOnly:
    """Without --repair, verify writes nothing to the mirror."""

    def test_unchanged_file(self, sqlite_live: Live, tmp_path: Path) -> None:
        path = tmp_path / "m.db"
        url = f"sqlite:///{path}"
        with sqlite_live.http() as api:
            ids = create(api, 20)
            build_mirror(api, url)
            sql(url, 'DELETE FROM "Leads" WHERE id = ?', ids[0])
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        before = dump(path)
        code, out, _ = run_verify(sqlite_live, url)
        assert code == 1 and listed(out) == {ids[0]: "missing"}
        assert dump(path) == before


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()
