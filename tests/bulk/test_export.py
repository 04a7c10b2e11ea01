"""The Bulk Read export file (bulk/csvzip.py) on real databases: PostgreSQL's COPY and SQLite's
batch formatter write exactly what the value-by-value Python formatter writes, the two backends
agree, pages by key hold exactly the records after the key, and failures leave no file."""

from __future__ import annotations

import asyncio
import csv
import errno
import io
import multiprocessing
import os
import re
import secrets
import sqlite3
import zipfile
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmwatch.bulk import cells, csvzip
from crmwatch.bulk.pgexport import RowTail
from crmwatch.domain import clock
from crmwatch.domain.modules import check_references, load_modules, merge_modules
from crmwatch.store import tenants
from tests.conftest import Live, new_pg_database, now_ms, run_flow, start_server

ZONES = ["America/Los_Angeles", "Asia/Kathmandu", "Africa/Monrovia", "Pacific/Kiritimati",
         "America/St_Johns", "UTC"]
"""Whole-hour, quarter-hour, half-hour and (before 1972) seconds offsets; +14 and -10:40."""

GADGETS = {"modules": [{
    "api_name": "Gadgets", "singular_label": "Gadget", "plural_label": "Gadgets",
    "display_field": "Name", "fields": [
        {"api_name": "Name", "label": "Name", "data_type": "text", "mandatory": True},
        {"api_name": "Notes", "label": "Notes", "data_type": "textarea"},
        {"api_name": "Mail", "label": "Mail", "data_type": "email"},
        {"api_name": "Phone", "label": "Phone", "data_type": "phone"},
        {"api_name": "Site", "label": "Site", "data_type": "website"},
        {"api_name": "Kind", "label": "Kind", "data_type": "picklist", "picklist": ["A", "B"]},
        {"api_name": "Tags", "label": "Tags", "data_type": "multiselectpicklist",
         "picklist": ["x", "y"]},
        {"api_name": "Count", "label": "Count", "data_type": "integer"},
        {"api_name": "Big", "label": "Big", "data_type": "bigint"},
        {"api_name": "Ratio", "label": "Ratio", "data_type": "double"},
        {"api_name": "Price", "label": "Price", "data_type": "currency"},
        {"api_name": "Share", "label": "Share", "data_type": "percent"},
        {"api_name": "Flag", "label": "Flag", "data_type": "boolean"},
        {"api_name": "Day", "label": "Day", "data_type": "date"},
        {"api_name": "At", "label": "At", "data_type": "datetime"},
        {"api_name": "Account", "label": "Account", "data_type": "lookup", "lookup": "Accounts"},
        {"api_name": "Helper", "label": "Helper", "data_type": "userlookup"},
    ]}]}

TRICKY = [
    "plain", 'comma, "quoted" and\nnewline', "crlf\r\nand lone\rcr", "ünïcödé ✓ 𝄞 中文",
    "123", "-5", "[not json]", "{x}", "true", "\\.", " spaced ", "tab\there", "ctl\x01char",
    "", '"', ",", "'single'",
]


def add_gadgets(database_url: str) -> None:
    def flow() -> Any:
        org = yield from tenants.find_org("acme")
        current, _ = yield from tenants.load_catalog(org.id)
        merged = merge_modules(current, load_modules(GADGETS, custom=True))
        check_references(merged)
        yield from tenants.save_catalog(org, merged, now_ms())
    run_flow(database_url, flow())


def post(api: httpx.Client, module: str, rows: list[dict[str, Any]]) -> list[str]:
    r = api.post(f"/crm/v8/{module}", json={"data": rows})
    assert r.status_code == 201, [d for d in r.json()["data"] if d["status"] != "success"]
    return [d["details"]["id"] for d in r.json()["data"]]


def gadget_rows(account: str, user: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"Name": "everything", "Notes": "line1\r\nline2", "Mail": "a@b.co",
         "Phone": "+1 (555) 010-999", "Site": "https://x.example/a?b=c,d", "Kind": "A",
         "Tags": ["x", "y;z", "a,b", 'q"t', "ünï"], "Count": -5, "Big": 10**17, "Ratio": 0.1,
         "Price": 3059.0, "Share": 12.5, "Flag": True, "Day": "2026-02-28",
         "At": "2026-03-08T10:30:00Z", "Account": {"id": account}, "Helper": {"id": user}},
        {"Name": "small and large", "Notes": "", "Tags": [], "Count": 0, "Big": -1,
         "Ratio": 1e-05, "Price": 9999999999999999, "Share": 0, "Flag": False,
         "At": "1800-01-01T00:00:00Z"},
        {"Name": "zeros", "Tags": ["solo"], "Count": 999999999, "Ratio": -0.0,
         "Price": 1234567.891, "At": "1950-06-01T12:00:00+05:30", "Share": 99.99},
        {"Name": "edges of time", "At": "0001-01-01T00:00:00Z", "Ratio": 123456789012345.6,
         "Price": 0.30000000000000004},
        {"Name": "the end", "At": "9999-12-31T23:59:59Z", "Price": 0.5, "Flag": None,
         "Account": None},
        {"Name": "dst", "At": "2026-11-01T09:30:00Z", "Day": "1999-12-31"},
    ]
    for i, text in enumerate(TRICKY):
        rows.append({"Name": text or "empty notes", "Notes": text, "Site": text,
                     "Tags": [text, text + "2"] if text else [], "Count": i})
    return rows


def lead_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"Last_Name": "Smith", "First_Name": "Ann", "Company": "Watkins, Long and Jackson",
         "Email": "ann@example.com", "Annual_Revenue": 49936.21, "No_of_Employees": 9626,
         "Email_Opt_Out": True, "Description": 'She said "hi",\nthen left.'},
        {"Last_Name": "Bare"},
        {"Last_Name": "Nulls", "Company": None, "Annual_Revenue": None, "Email_Opt_Out": None},
        {"Last_Name": "Big", "Annual_Revenue": 123456789012345.0, "No_of_Employees": 0},
    ]
    rows += [{"Last_Name": text or "empty", "Description": text, "City": text}
             for text in TRICKY]
    return rows


def module_spec(live: Live, module: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """An export spec as the API builds it: every field of the module."""
    modules, _ = run_flow(live.database_url, tenants.load_catalog(live.org_id), write=False)
    found = next(m for m in modules if m.api_name == module)
    columns = [[f.api_name, f.data_type] for f in found.fields
               if f.api_name != "id" and f.data_type != "subform"]
    return {"database_url": live.database_url, "id": secrets.randbelow(10**9) + 1,
            "org_id": live.org_id, "module": module, "criteria": None,
            "plan": {"columns": columns, "types": {f.api_name: f.data_type for f in found.fields},
                     "tz": "America/Los_Angeles"},
            "page": 1, "per_page": 200000, "out_dir": str(tmp_path / "out"), **extra}


def csv_bytes(result: csvzip.ExportResult, spec: dict[str, Any]) -> bytes:
    with zipfile.ZipFile(result.path) as zf:
        assert zf.namelist() == [f"{spec['id']}.csv"]
        return zf.read(f"{spec['id']}.csv")


def stored(database_url: str, org_id: int, module: str) -> list[tuple[int, Any, int, int]]:
    """The module's records as stored: (id, data, created ms, modified ms), in id order."""
    sql = ("SELECT id, {data}, created_time, modified_time FROM records "
           "WHERE org_id = {p}1 AND module = {p}2 ORDER BY id")
    if database_url.startswith("postgres"):
        import asyncpg

        async def main() -> list[Any]:
            conn = await asyncpg.connect(database_url)
            try:
                return list(await conn.fetch(sql.format(data="data::text", p="$"),
                                             org_id, module))
            finally:
                await conn.close()
        rows = asyncio.run(main())
    else:
        from crmwatch.store.sqlite import path_from_url

        conn = sqlite3.connect(path_from_url(database_url))
        try:
            rows = conn.execute(sql.format(data="data", p="?"), (org_id, module)).fetchall()
        finally:
            conn.close()
    return [(int(r[0]), orjson.loads(r[1]), int(r[2]), int(r[3])) for r in rows]


def reference(spec: dict[str, Any], rows: list[tuple[int, Any, int, int]]) -> bytes:
    """The CSV the value-by-value Python formatter writes for these stored rows."""
    columns = spec["plan"]["columns"]
    tz = clock.zone(spec["plan"]["tz"])
    lines = [cells.csv_line(cells.format_row(columns, *row, tz)) for row in rows]
    return cells.header(columns) + "".join(lines).encode()


def export_all_zones(spec: dict[str, Any], rows: list[tuple[int, Any, int, int]]) -> None:
    for zone in ZONES:
        zoned = {**spec, "plan": {**spec["plan"], "tz": zone}}
        result = csvzip.export(zoned)
        assert (result.count, result.more_records) == (len(rows), False)
        assert result.last_id == rows[-1][0]
        got, want = csv_bytes(result, zoned), reference(zoned, rows)
        if got != want:  # show the first differing line, not two megabytes
            pairs = zip(got.split(b"\n"), want.split(b"\n"), strict=False)
            line = next(p for p in pairs if p[0] != p[1])
            pytest.fail(f"{zone}: export {line[0]!r} != reference {line[1]!r}")


class TestSameBytes:
    """Each backend's export equals the Python formatter's output for the stored records."""

    def test_every_type(self, live: Live, api: httpx.Client, tmp_path: Path) -> None:
        add_gadgets(live.database_url)
        (account,) = post(api, "Accounts", [{"Account_Name": "Acme, Inc."}])
        user = api.get("/crm/v8/users", params={"type": "CurrentUser"}).json()["users"][0]["id"]
        post(api, "Gadgets", gadget_rows(account, user))
        post(api, "Leads", lead_rows())
        for module in ("Gadgets", "Leads"):
            spec = module_spec(live, module, tmp_path)
            rows = stored(live.database_url, live.org_id, module)
            export_all_zones(spec, rows)

        # The rules, pinned on a few cells (Los Angeles).
        spec = module_spec(live, "Gadgets", tmp_path)
        table = list(csv.reader(io.StringIO(csv_bytes(csvzip.export(spec), spec).decode(),
                                            newline="")))
        names = table[0]

        def cell(name: str, row: str) -> str:
            found = next(r for r in table if r[names.index("Name")] == row)
            return found[names.index(name)]

        assert cell("Account", "everything") == account
        assert cell("Helper", "everything") == user
        assert cell("Owner", "everything") == user
        assert cell("At", "everything") == "2026-03-08T03:30:00-07:00"
        assert cell("At", "dst") == "2026-11-01T01:30:00-08:00"
        assert cell("At", "small and large") == "1799-12-31T16:07:02-07:52:58"
        assert cell("At", "edges of time") == "0001-01-01T00:00:00+00:00"
        assert cell("Price", "everything") == "3059.0"
        assert cell("Price", "small and large") == "10000000000000000"
        assert cell("Ratio", "small and large") == "0.00001"
        assert cell("Ratio", "zeros") == "0.0"
        assert cell("Flag", "small and large") == "false"
        assert cell("Flag", "the end") == "false"  # never ticked: false, as Zoho shows it
        assert cell("Big", "everything") == "100000000000000000"

    def test_header_only(self, live: Live, tmp_path: Path) -> None:
        spec = module_spec(live, "Leads", tmp_path)
        result = csvzip.export(spec)
        assert (result.count, result.more_records, result.last_id) == (0, False, None)
        names = [c[0] for c in spec["plan"]["columns"]]
        assert csv_bytes(result, spec) == ("Id," + ",".join(names) + "\n").encode()
        assert os.listdir(tmp_path / "out") == [f"{spec['id']}.zip"]


@pytest.mark.postgres
class TestBackendsAgree:
    """The same API writes export the same CSV text from SQLite and PostgreSQL, ids aside."""

    def test_same_text(self, pg_cluster: Any, tmp_path: Path) -> None:
        texts = []
        for url in (f"sqlite:///{tmp_path / 'crm.db'}", new_pg_database(pg_cluster)):
            live = start_server(url)
            try:
                add_gadgets(url)
                with live.http() as api:
                    (account,) = post(api, "Accounts", [{"Account_Name": "Acme"}])
                    user = api.get("/crm/v8/users",
                                   params={"type": "CurrentUser"}).json()["users"][0]["id"]
                    post(api, "Gadgets", gadget_rows(account, user))
                    post(api, "Leads", lead_rows())
                out = []
                for module in ("Gadgets", "Leads"):
                    spec = module_spec(live, module, tmp_path)
                    spec["plan"]["columns"] = [c for c in spec["plan"]["columns"]
                                               if c[0] not in cells.TIME_COLUMNS]
                    out.append(csv_bytes(csvzip.export(spec), spec).decode())
                texts.append(out)
            finally:
                live.stop()

        def without_ids(text: str) -> str:
            seen: dict[str, str] = {}
            return re.sub(r"\b[0-9]{19}\b", lambda m: seen.setdefault(m[0], f"#{len(seen)}"),
                          text)

        assert [without_ids(t) for t in texts[0]] == [without_ids(t) for t in texts[1]]


class TestPaging:
    """`after_id` pages hold exactly the records after the key; `last_id` is the page's last."""

    def test_after_id(self, live: Live, api: httpx.Client, tmp_path: Path) -> None:
        ids = [int(i) for i in post(api, "Leads", [{"Last_Name": f"P{i}"} for i in range(8)])]
        r = api.delete("/crm/v8/Leads", params={"ids": str(ids[4])})
        assert r.status_code == 200, r.text
        del ids[4]  # P0 P1 P2 P3 P5 P6 P7
        spec = module_spec(live, "Leads", tmp_path, per_page=3)
        spec["plan"]["columns"] = [["Last_Name", "text"]]

        def page(**extra: Any) -> tuple[list[int], bool, int | None]:
            result = csvzip.export({**spec, **extra})
            lines = csv_bytes(result, spec).decode().splitlines()
            assert lines[0] == "Id,Last_Name" and len(lines) == result.count + 1
            got = [int(line.split(",")[0]) for line in lines[1:]]
            assert result.last_id == (got[-1] if got else None)
            return got, result.more_records, result.last_id

        assert page() == (ids[0:3], True, ids[2])
        assert page(after_id=ids[0] - 1) == (ids[0:3], True, ids[2])
        assert page(after_id=ids[2]) == (ids[3:6], True, ids[5])
        assert page(after_id=ids[3]) == (ids[4:7], False, ids[6])
        assert page(after_id=ids[5]) == (ids[6:7], False, ids[6])
        assert page(after_id=ids[6]) == ([], False, None)
        assert page(page=3) == (ids[6:7], False, ids[6])
        assert page(page=2, after_id=ids[0]) == (ids[1:4], True, ids[3])  # the key wins
        assert page(after_id=ids[3], per_page=4) == (ids[4:7], False, ids[6])
        assert page(after_id=ids[2], per_page=4) == (ids[3:7], False, ids[6])
        criteria = {"field": {"api_name": "Last_Name"}, "comparator": "in",
                    "value": ["P0", "P2", "P3", "P7"]}
        assert page(criteria=criteria, after_id=ids[0]) == ([ids[2], ids[3], ids[6]], False,
                                                            ids[6])
        assert page(criteria=criteria, per_page=2) == ([ids[0], ids[2]], True, ids[2])
        assert page(criteria=criteria, per_page=2, after_id=ids[2]) == ([ids[3], ids[6]], False,
                                                                        ids[6])


def _export_with_file_limit(spec: dict[str, Any], limit: int) -> csvzip.ExportResult:
    """In a child process, as the runner runs it: the export with files limited in size."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails: EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return csvzip.export(spec)


class TestFailures:
    """A failed export raises a clear error and leaves no file, partial or final."""

    def test_write_error(self, live: Live, api: httpx.Client, tmp_path: Path) -> None:
        count = (csvzip.CHUNK // 1000 // 100 + 2) * 100  # CSV past the first write into the zip
        for _ in range(count // 100):
            post(api, "Leads", [{"Last_Name": "L", "Description": secrets.token_hex(500)}
                                for _ in range(100)])
        spec = module_spec(live, "Leads", tmp_path)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool, \
                pytest.raises(csvzip.ExportError) as raised:
            pool.submit(_export_with_file_limit, spec, 8192).result(timeout=60)
        message = str(raised.value)
        assert "cannot write the bulk read result" in message and "File too large" in message
        assert str(tmp_path / "out") in message
        assert raised.value.strerror == "File too large"  # what API clients may see: no path
        assert raised.value.errno == errno.EFBIG
        assert os.listdir(tmp_path / "out") == []
        assert csvzip.export(spec).count == count  # and without the limit it works

    def test_results_dir_is_a_file(self, live: Live, tmp_path: Path) -> None:
        spec = module_spec(live, "Leads", tmp_path)
        (tmp_path / "out").write_text("not a directory")
        with pytest.raises(csvzip.ExportError, match="is not a directory") as raised:
            csvzip.export(spec)
        assert raised.value.strerror == "Not a directory"
        spec["out_dir"] = str(tmp_path / "out" / "below")
        with pytest.raises(csvzip.ExportError, match="below"):
            csvzip.export(spec)
        assert (tmp_path / "out").read_text() == "not a directory"

    @pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
    def test_unwritable_dir(self, live: Live, tmp_path: Path) -> None:
        spec = module_spec(live, "Leads", tmp_path)
        os.makedirs(spec["out_dir"])
        os.chmod(spec["out_dir"], 0o500)
        try:
            with pytest.raises(csvzip.ExportError, match="Permission denied"):
                csvzip.export(spec)
        finally:
            os.chmod(spec["out_dir"], 0o700)

    def test_database_error(self, live: Live, api: httpx.Client, tmp_path: Path) -> None:
        post(api, "Leads", [{"Last_Name": "x"}])
        spec = module_spec(live, "Leads", tmp_path)
        spec["plan"]["tz"] = "Nowhere/Zone"
        with pytest.raises(Exception, match="Nowhere/Zone"):
            csvzip.export(spec)
        assert os.listdir(tmp_path / "out") == []

    def test_failure_mid_stream(self, database_url: str, tmp_path: Path) -> None:
        run_flow(database_url, tenants.list_orgs(), write=False)  # migrates first
        rows = [(i, {"F_datetime": "2026-02-28T00:00:00+00:00", "F_text": secrets.token_hex(50)},
                 0, 0) for i in range(1, 5001)]
        rows.append((5001, {"F_datetime": "2026-02-30T00:00:00+00:00"}, 0, 0))  # not a date
        insert(database_url, rows)
        spec = {"database_url": database_url, "id": 8, "org_id": 1, "module": "Shapes",
                "criteria": None, "page": 1, "per_page": 10000,
                "out_dir": str(tmp_path / "out"),
                "plan": {"columns": SHAPE_COLUMNS, "types": dict(SHAPE_COLUMNS), "tz": "UTC"}}
        with pytest.raises(Exception, match="out of range"):
            csvzip.export(spec)
        assert os.listdir(tmp_path / "out") == []

    def test_out_dir(self, live: Live, tmp_path: Path) -> None:
        spec = module_spec(live, "Leads", tmp_path)
        assert csvzip.export(spec, str(tmp_path / "arg")).path == \
            str(tmp_path / "out" / f"{spec['id']}.zip")
        del spec["out_dir"]
        assert csvzip.export(spec, str(tmp_path / "arg")).path == \
            str(tmp_path / "arg" / f"{spec['id']}.zip")


# -- any JSON shape, written straight into the records table --------------------------------

SHAPE_COLUMNS = [[f"F_{t}", t] for t in (
    "text", "integer", "double", "boolean", "datetime", "multiselectpicklist", "lookup",
    "userlookup", "date")] + [["Created_Time", "datetime"], ["Modified_Time", "datetime"]]

_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
                max_size=12)
_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | _text)
_stored_datetimes = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                                 timezones=st.just(UTC)).map(clock.utc_text)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_text, inner, max_size=3), max_leaves=6)
_values = (_json | _stored_datetimes | st.lists(_text, max_size=3)
           | st.fixed_dictionaries({"id": st.integers(1, 2**62).map(str), "name": _text})
           | st.fixed_dictionaries({"id": _scalars}))
_records = st.lists(st.dictionaries(st.sampled_from([c[0] for c in SHAPE_COLUMNS[:-2]]),
                                    _values, max_size=9), min_size=1, max_size=8)
_times = st.integers(-(2**40), 2**45)
_migrated: set[str] = set()


def insert(database_url: str, rows: list[tuple[int, dict[str, Any], int, int]]) -> None:
    """Replace module Shapes of org 1 by these records, stored as the API stores JSON."""
    params = [(i, orjson.dumps(d).decode(), c, m) for i, d, c, m in rows]
    if database_url.startswith("postgres"):
        import asyncpg

        async def main() -> None:
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute("DELETE FROM records WHERE module = 'Shapes'")
                await conn.executemany(
                    "INSERT INTO records (id, org_id, module, data, created_time, modified_time)"
                    " VALUES ($1, 1, 'Shapes', $2::jsonb, $3, $4)", params)
            finally:
                await conn.close()
        asyncio.run(main())
        return
    from crmwatch.store.sqlite import path_from_url

    conn = sqlite3.connect(path_from_url(database_url))
    try:
        with conn:
            conn.execute("DELETE FROM records WHERE module = 'Shapes'")
            conn.executemany(
                "INSERT INTO records (id, org_id, module, data, created_time, modified_time)"
                " VALUES (?, 1, 'Shapes', ?, ?, ?)", params)
    finally:
        conn.close()


class TestShapes:
    """Any JSON shape in any field (left by a type change) exports like the reference."""

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(records=_records, times=st.lists(st.tuples(_times, _times), min_size=8, max_size=8),
           zone=st.sampled_from(ZONES))
    def test_shapes(self, database_url: str, tmp_path: Path, records: list[dict[str, Any]],
                    times: list[tuple[int, int]], zone: str) -> None:
        if database_url not in _migrated:
            run_flow(database_url, tenants.list_orgs(), write=False)  # migrates first
            _migrated.add(database_url)
        insert(database_url, [(i + 1, d, *times[i]) for i, d in enumerate(records)])
        spec = {"database_url": database_url, "id": 7, "org_id": 1, "module": "Shapes",
                "criteria": None, "page": 1, "per_page": 100, "out_dir": str(tmp_path),
                "plan": {"columns": SHAPE_COLUMNS, "types": dict(SHAPE_COLUMNS), "tz": zone}}
        rows = stored(database_url, 1, "Shapes")
        assert csv_bytes(csvzip.export(spec), spec) == reference(spec, rows)


def test_row_tail() -> None:
    """The last row's id is found however COPY's stream is cut."""
    text = (b'1,"a\n2,b",x\n22,plain\n333,"q""\n""",""\n4444,"x,\n'
            b'5,y\n6,z"\n')
    for cut in range(len(text) + 1):
        for step in (1, 3, 7):
            tail = RowTail()
            tail.feed(text[:cut])
            for i in range(cut, len(text), step):
                tail.feed(text[i:i + step])
            assert tail.last_id == 4444, (cut, step)
    tail = RowTail()
    tail.feed(b"9\n10\n")
    assert tail.last_id == 10


def test_number_text() -> None:
    """Numbers show as PostgreSQL's numeric prints what orjson stored: no exponent."""
    assert [cells.text(v) for v in (1e16, 1e-05, -0.0, 0.0, 3059.0, 0.1 + 0.2, 5, -(2**63),
                                    1.5e300)] == [
        "10000000000000000", "0.00001", "0.0", "0.0", "3059.0", "0.30000000000000004", "5",
        str(-(2**63)), "15" + "0" * 299]
    assert cells.jsonb_text({"bb": 1, "a": [1.0, None], "é": True, "ab": "x\u0001\n\"é/"}) == \
        '{"a": [1.0, null], "ab": "x\\u0001\\n\\"é/", "bb": 1, "é": true}'


_KINDS = {"str": _text, "int": st.integers(-(2**63), 2**63 - 1),
          "float": st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([-0.0, 1e16]),
          "bool": st.booleans(), "lookup": st.fixed_dictionaries({"id": _text}),
          "datetime": _stored_datetimes}
_TYPES = ["text", "integer", "double", "currency", "boolean", "datetime", "lookup",
          "ownerlookup", "multiselectpicklist", "date"]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_batch_fast_paths(data: st.DataObject) -> None:
    """Columns of one JSON type (the batch formatter's fast paths) format like the reference."""
    columns = [[f"C{i}", data.draw(st.sampled_from(_TYPES))]
               for i in range(data.draw(st.integers(1, 4)))]
    kinds = [_KINDS[data.draw(st.sampled_from(sorted(_KINDS)))] for _ in columns]
    rows = []
    for i in range(data.draw(st.integers(1, 6))):
        record = {}
        for (name, _t), kind in zip(columns, kinds, strict=True):
            value = data.draw(st.none() | kind | st.just("missing"))
            if value != "missing":
                record[name] = value
        rows.append((i + 1, record, 0, 0))
    tz = clock.zone(data.draw(st.sampled_from(ZONES)))
    want = "".join(cells.csv_line(cells.format_row(columns, *r, tz)) for r in rows)
    values = [(i, orjson.dumps([d.get(c[0]) for c in columns]), c, m) for i, d, c, m in rows]
    assert cells.format_batch(columns, values, tz) == want
