"""A Bulk Read row converted by sync/cells.py equals the records API's record, on every
field type of every standard module (what makes a snapshot row and a fetched row agree)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from crmwatch.client.zoho import Credentials, ZohoClient
from crmwatch.sync import cells
from crmwatch.sync.producer import iter_csv_batches
from tests.conftest import Live, start_server


@pytest.fixture
def live(database_url: str) -> Any:
    """A server whose Bulk Read takes many jobs and downloads at once."""
    server = start_server(database_url, bulk_max_active_jobs=0, bulk_downloads_per_minute=0)
    try:
        yield server
    finally:
        server.stop()


def sample(f: dict[str, Any], targets: dict[str, str], user: str, n: int) -> Any:
    t = f["data_type"]
    picks = [p["actual_value"] for p in f.get("pick_list_values") or []
             if p["actual_value"] != "-None-"]
    if t in ("text", "textarea"):
        return f'a, "b"\nc \u00fc{n}'[: f.get("length") or 255]
    return {
        "email": f"x{n}@y.test", "phone": "555-0100", "website": "https://x.test/a?b=1",
        "integer": 42 + n, "bigint": 12345678901 + n, "double": 3.25, "currency": 1000.5,
        "percent": 12.5, "boolean": n % 2 == 0, "date": "2026-01-31",
        "datetime": "2026-11-23T04:00:00+05:30",
        "picklist": picks[0] if picks else "Other",
        "multiselectpicklist": picks[:2] or ["a", "b"],
        "userlookup": {"id": user}, "ownerlookup": {"id": user},
    }.get(t) if t != "lookup" else (
        {"id": targets[f["lookup"]["module"]["api_name"]]}
        if (f.get("lookup") or {}).get("module", {}).get("api_name") in targets else None)


def module_fields(api: httpx.Client, module: str) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = api.get("/crm/v8/settings/fields",
                                           params={"module": module}).json()["fields"]
    return fields


def writable(f: dict[str, Any]) -> bool:
    return not f.get("read_only") and f["api_name"] != "id" and f["data_type"] not in (
        "subform", "autonumber")


class TestCsvRowsEqualApiRecords:
    """Every standard module, every field type: cells.from_cells(row) == GET ?ids=."""

    def test_every_type(self, live: Live, api: httpx.Client, tmp_path: Path) -> None:
        modules = [m["api_name"] for m in api.get("/crm/v8/settings/modules").json()["modules"]
                   if m.get("generated_type") != "subform"]
        user = api.get("/crm/v8/users").json()["users"][0]["id"]
        metas = {m: module_fields(api, m) for m in modules}
        targets: dict[str, str] = {}
        for m in modules:  # one plain record per module, the lookups' targets
            row = {f["api_name"]: sample(f, {}, user, 0) for f in metas[m]
                   if f.get("system_mandatory") and writable(f)}
            r = api.post(f"/crm/v8/{m}", json={"data": [row]})
            assert r.status_code == 201, (m, r.text)
            targets[m] = r.json()["data"][0]["details"]["id"]
        created: dict[str, list[str]] = {}
        for m in modules:
            full = [{f["api_name"]: sample(f, targets, user, n) for f in metas[m] if writable(f)}
                    for n in (1, 2)]
            r = api.post(f"/crm/v8/{m}", json={"data": full})
            assert r.status_code == 201, (m, r.text)
            created[m] = [d["details"]["id"] for d in r.json()["data"]]
        checked_types: set[str] = set()

        async def check() -> None:
            async with ZohoClient(Credentials(live.client_id, live.client_secret,
                                              live.refresh_token), accounts_url=live.base_url,
                                  api_url=live.base_url) as zoho:
                users = {str(u["id"]): cells.User(u["full_name"], u.get("email"))
                         for u in await zoho.users()}
                async def export(m: str) -> Path:
                    job = await zoho.create_bulk_read({"query": {"module": {"api_name": m}}})
                    await zoho.wait_bulk_read(job["id"], poll_seconds=0.2)
                    path = tmp_path / f"{m}.zip"
                    await zoho.download_bulk_read(job["id"], path)
                    return path

                paths = dict(zip(modules, await asyncio.gather(*map(export, modules)),
                                 strict=True))
                for m in modules:
                    specs = cells.specs_from_metadata(await zoho.fields(m))
                    path = paths[m]
                    rows = {}
                    for header, batch in iter_csv_batches(path, 1000):
                        plan, whole = cells.plan_for(specs, header)
                        assert whole, m
                        for (record, complete), raw in zip(
                                cells.convert_rows(plan, batch, users), batch, strict=True):
                            assert (record, complete) == cells.from_cells(specs, header, raw,
                                                                          users)
                            rows[record["id"]] = (record, complete)
                    fetched = await zoho.get_records(m, list(rows))
                    assert len(fetched) == len(rows) == 3, m
                    for api_record in fetched:
                        record, complete = rows[api_record["id"]]
                        has_record_lookup = any(
                            s.data_type in cells.RECORD_LOOKUPS and api_record.get(s.name)
                            for s in specs)
                        assert complete == (not has_record_lookup), (m, api_record)
                        if complete:
                            assert record == api_record, m
                        else:  # only a related record's name is missing
                            for s in specs:
                                if s.data_type in cells.RECORD_LOOKUPS and record[s.name]:
                                    assert record[s.name]["id"] == api_record[s.name]["id"]
                                    record[s.name] = api_record[s.name]
                            assert record == api_record, m
                        checked_types.update(s.data_type for s in specs
                                             if api_record.get(s.name) is not None)

        asyncio.run(check())
        assert checked_types >= {"text", "textarea", "email", "phone", "website", "integer",
                                 "bigint", "double", "currency", "boolean", "date", "datetime",
                                 "picklist", "lookup", "userlookup", "ownerlookup"}
