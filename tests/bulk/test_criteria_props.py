"""Bulk Read criteria, as a property: a job exports exactly the Leads a filter over the records
API picks, on both backends.

One server and one data set per backend (module scope): Leads written through the API with
values drawn to collide with the criteria (small alphabets, LIKE's special characters, case
variants, missing / null / empty values, big integers, date-times written in several offsets),
plus custom fields for the types standard Leads lack (date, datetime, multi-select picklist,
bigint, percent, lookup). Hypothesis draws criteria (every comparator the spec allows per
field type, `${EMPTY}`, nested and/or groups); each runs as a real job through the HTTP API,
and the CSV's ids must equal `holds` (the oracle below, written from spec/bulk-read.md §3) over
the records `GET /crm/v8/Leads` lists, and `crmwatch.domain.criteria.evaluate` must agree.

The oracle's semantics, where the spec leaves them open (chosen for what a Zoho user expects):
* text (text, email, phone, website, picklist, textarea) compares case-insensitively; a
  multi-select picklist matches when one of its items does. Only ASCII letters get a case
  variant here: crmwatch folds ASCII only (SQLite's lower()), Zoho presumably all of Unicode,
  so "É" vs "é" is not tested either way;
* `${EMPTY}` (equal / not_equal only) matches a field that is missing, null, "" or [];
* a field without a value satisfies no positive comparator, and each negative one (not_equal,
  not_in, not_contains, not_between) is the exact complement of its positive, so it matches
  records where the field is empty;
* numbers compare by value (an int equals the same float), dates as dates, date-times as
  instants (whatever the offset), Created_Time / Modified_Time at whole seconds as the API
  shows them; `between` includes both ends;
* a boolean without a value is neither true nor false (the API stores an unticked
  checkbox as false, so only values written before that rule could be empty).

CRMWATCH_CRITERIA_EXAMPLES sets how many examples run (default 40, derandomized).
"""

from __future__ import annotations

import csv
import io
import operator
import os
import random
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmwatch.domain import criteria as crit
from crmwatch.domain.modules import check_references, load_modules, merge_modules
from crmwatch.store import tenants
from tests.conftest import Live, new_pg_database, now_ms, run_flow, start_server

EMPTY = "${EMPTY}"
EXAMPLES = int(os.environ.get("CRMWATCH_CRITERIA_EXAMPLES", "40"))

# -- the spec's table (bulk-read.md §3), and the fields under test ---------------------------------

TEXT_OPS = ("equal", "not_equal", "in", "not_in", "contains", "not_contains", "starts_with",
            "ends_with")
NUMBER_OPS = ("equal", "not_equal", "in", "not_in", "less_than", "less_equal", "greater_than",
              "greater_equal")
TIME_OPS = ("equal", "not_equal", "in", "not_in", "between", "not_between", "greater_than",
            "greater_equal", "less_than", "less_equal")
COMPARATORS = {"text": TEXT_OPS, "multi": TEXT_OPS, "number": NUMBER_OPS, "date": TIME_OPS,
               "datetime": TIME_OPS, "boolean": ("equal",),
               "lookup": ("equal", "not_equal", "in", "not_in")}
NEGATIVES = {"not_equal": "equal", "not_in": "in", "not_contains": "contains",
             "not_between": "between"}

KINDS = {
    "Last_Name": "text", "First_Name": "text", "Company": "text", "Email": "email",
    "Phone": "text", "Website": "text", "Lead_Source": "text", "Description": "text",
    "Tags": "multi", "No_of_Employees": "integer", "Big": "integer",
    "Annual_Revenue": "number", "Share": "number", "Due_Date": "date", "Met_At": "datetime",
    "Created_Time": "datetime", "Modified_Time": "datetime", "Email_Opt_Out": "boolean",
    "Owner": "lookup", "Account": "lookup", "id": "id",
}
"""Fields in criteria; `email`, `integer` and `id` are text and numbers with values of their
own (the record id is a bigint field: its values are ids, as JSON numbers or strings)."""


def kind(name: str) -> str:
    return {"email": "text", "integer": "number", "id": "number"}.get(KINDS[name], KINDS[name])


CUSTOM_FIELDS = {"modules": [{
    "api_name": "Leads", "singular_label": "Lead", "plural_label": "Leads", "fields": [
        {"api_name": "Tags", "label": "Tags", "data_type": "multiselectpicklist",
         "picklist": ["a", "A b", "b", "c%"]},
        {"api_name": "Big", "label": "Big", "data_type": "bigint"},
        {"api_name": "Share", "label": "Share", "data_type": "percent", "decimal_place": 2},
        {"api_name": "Due_Date", "label": "Due Date", "data_type": "date"},
        {"api_name": "Met_At", "label": "Met At", "data_type": "datetime"},
        {"api_name": "Account", "label": "Account", "data_type": "lookup",
         "lookup": "Accounts"}]}]}
"""Types the standard Leads lack (docs/schema.md), added before the first API request."""

# -- values: what records hold, and what criteria compare with -------------------------------------

WORDS = ["a", "A", "ab", "Ab", "ba", "b", "a b", "a%b", "a_b", "a\\b", "%", "é", " a"]
TEXTS = {
    "Last_Name": WORDS, "First_Name": WORDS, "Company": WORDS, "Description": WORDS,
    "Email": ["a@x.io", "A@X.io", "b@x.io", "ab@y.io"],
    "Phone": ["123", "1234", "+1 23", "0"],
    "Website": ["a.com", "A.com", "b.org"],
    "Lead_Source": ["Advertisement", "Cold Call", "cold call", "Partner"],
}
TAGS = ["a", "A b", "b", "c%"]
NUMBERS: dict[str, list[Any]] = {
    "No_of_Employees": [-1, 0, 1, 2, 10, 999999999],
    "Big": [0, 1, 2**53, 2**53 + 1, -(2**53) - 1, 10**18 - 1],
    "Annual_Revenue": [0, 0.5, 1, 1.25, 100, 1e6],
    "Share": [0, 12.5, 50, 99.99],
}
DATES = ["1999-12-31", "2024-02-28", "2024-02-29", "2024-03-01", "2025-01-01"]
MOMENTS = [datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC) + timedelta(seconds=s)
           for s in (-36000, -1, 0, 1, 86400)]
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]


def show(moment: datetime, zone: timezone) -> str:
    text = moment.astimezone(zone).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if zone is UTC and moment.second % 2 else text


def draw_lead(rng: random.Random, accounts: list[str]) -> dict[str, Any]:
    """One Lead: each field missing, empty or a value from its pool."""
    lead: dict[str, Any] = {"Last_Name": rng.choice(WORDS)}
    pools: dict[str, list[Any]] = {
        **{k: v for k, v in TEXTS.items() if k != "Last_Name"}, **NUMBERS,
        "Tags": [rng.sample(TAGS, rng.randint(1, 3)) for _ in range(4)],
        "Due_Date": DATES, "Met_At": [show(m, rng.choice(ZONES)) for m in MOMENTS],
        "Email_Opt_Out": [True, False], "Account": [{"id": a} for a in accounts]}
    for name, pool in pools.items():
        roll = rng.random()
        if roll < 0.15:
            continue
        if roll < 0.25:
            lead[name] = None
        elif roll < 0.3 and name in TEXTS:
            lead[name] = ""
        elif roll < 0.3 and name == "Tags":
            lead[name] = []
        else:
            lead[name] = rng.choice(pool)
    return lead


# -- the data set ---------------------------------------------------------------------------------

@dataclass(repr=False)
class DataSet:
    live: Live
    api: httpx.Client
    records: list[dict[str, Any]]
    """Every Lead as `GET /crm/v8/Leads` lists it."""
    types: dict[str, str]
    """Field API name -> data_type, from `GET /crm/v8/settings/fields`."""
    owner: str
    accounts: list[str]

    def __repr__(self) -> str:
        return f"DataSet({self.live.database_url.split(':')[0]}, {len(self.records)} Leads)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # what Hypothesis prints of the test's arguments


def add_custom_fields(database_url: str) -> None:
    def flow() -> Any:
        org = yield from tenants.find_org("acme")
        current, _ = yield from tenants.load_catalog(org.id)
        merged = merge_modules(current, load_modules(CUSTOM_FIELDS, custom=True))
        check_references(merged)
        yield from tenants.save_catalog(org, merged, now_ms())
    run_flow(database_url, flow())


def post(api: httpx.Client, module: str, rows: list[dict[str, Any]]) -> list[str]:
    r = api.post(f"/crm/v8/{module}", json={"data": rows})
    assert r.status_code == 201, r.text
    return [d["details"]["id"] for d in r.json()["data"]]


def list_leads(api: httpx.Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        r = api.get("/crm/v8/Leads", params={"page": page, "per_page": 200})
        assert r.status_code == 200, r.text
        out += r.json()["data"]
        if not r.json()["info"]["more_records"]:
            return out
        page += 1


def build(live: Live, api: httpx.Client) -> DataSet:
    rng = random.Random(20261123)
    accounts = post(api, "Accounts", [{"Account_Name": "One"}, {"Account_Name": "Two"}])
    # Fixed cases first: nothing set, everything empty, everything null.
    leads: list[dict[str, Any]] = [
        {"Last_Name": "bare"},
        {"Last_Name": "blank", **{k: "" for k in TEXTS if k != "Last_Name"}, "Tags": []},
        {"Last_Name": "null", **{k: None for k in KINDS if k not in (
            "id", "Last_Name", "Created_Time", "Modified_Time", "Owner")}},
    ]
    ids: list[str] = []
    # Three batches a second apart, so Created_Time differs between them.
    for batch in range(3):
        if batch:
            time.sleep(1.05)
        leads += [draw_lead(rng, accounts) for _ in range(18)]
        ids += post(api, "Leads", leads)
        leads = []
    time.sleep(1.05)
    # Some updates, so Modified_Time differs from Created_Time.
    r = api.put("/crm/v8/Leads", json={"data": [
        {"id": rid, "Description": rng.choice(WORDS)} for rid in rng.sample(ids, 12)]})
    assert r.status_code == 200, r.text
    r = api.delete("/crm/v8/Leads", params={"ids": ",".join(rng.sample(ids, 4))})
    assert r.status_code == 200, r.text
    r = api.get("/crm/v8/settings/fields", params={"module": "Leads"})
    types = {f["api_name"]: f["data_type"] for f in r.json()["fields"]}
    assert {name: types[name] for name in ("Tags", "Met_At", "Account")} == {
        "Tags": "multiselectpicklist", "Met_At": "datetime", "Account": "lookup"}
    owner = api.get("/crm/v8/users", params={"type": "CurrentUser"}).json()["users"][0]["id"]
    return DataSet(live, api, list_leads(api), types, owner, accounts)


NO_LIMITS: dict[str, Any] = {"bulk_downloads_per_minute": 0, "bulk_max_active_jobs": 0}
"""Every example downloads a result: no download or job limits here."""


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dataset(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataSet]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('criteria') / 'crm.db'}"
    else:
        url = new_pg_database(request.getfixturevalue("pg_cluster"))
    live = start_server(url, **NO_LIMITS)
    try:
        add_custom_fields(url)
        with live.http() as api:
            yield build(live, api)
    finally:
        live.stop()


# -- the oracle -----------------------------------------------------------------------------------

def present(name: str, record: dict[str, Any]) -> list[Any]:
    """The record's values of a field, in comparable form; [] when it has none."""
    value = record.get(name)
    if value is None or value == "" or value == []:
        return []
    if name == "id":
        return [int(value)]
    k = kind(name)
    if k == "text":
        return [value.lower()]
    if k == "multi":
        return [item.lower() for item in value]
    if k == "date":
        return [date.fromisoformat(value)]
    if k == "datetime":
        return [datetime.fromisoformat(value)]
    if k == "lookup":
        return [value["id"]]
    return [value]


def comparable(name: str, value: Any) -> Any:
    """A criteria value in the form `present` gives."""
    if name == "id":
        return int(value)
    k = kind(name)
    if k in ("text", "multi"):
        return str(value).lower()
    if k == "date":
        return date.fromisoformat(value)
    if k == "datetime":
        return datetime.fromisoformat(value)
    if k == "lookup":
        return str(value)
    return value


ORDER = {"less_than": operator.lt, "less_equal": operator.le, "greater_than": operator.gt,
         "greater_equal": operator.ge}


def compare(op: str, have: Any, want: Any) -> bool:
    if op == "equal":
        return bool(have == want)
    if op == "in":
        return have in want
    if op == "between":
        return bool(want[0] <= have <= want[1])
    if op == "contains":
        return bool(want in have)
    if op == "starts_with":
        return bool(have.startswith(want))
    if op == "ends_with":
        return bool(have.endswith(want))
    return bool(ORDER[op](have, want))


def holds(node: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether a record (as the records API shows it) satisfies a Bulk Read criteria."""
    if "group" in node:
        results = [holds(child, record) for child in node["group"]]
        return all(results) if node["group_operator"] == "and" else any(results)
    name = node["field"]["api_name"] if "field" in node else node["api_name"]
    comparator, value = node["comparator"], node["value"]
    op = NEGATIVES.get(comparator, comparator)
    values = present(name, record)
    if value == EMPTY:
        hit = not values
    else:
        want = ([comparable(name, v) for v in value] if isinstance(value, list)
                else comparable(name, value))
        hit = any(compare(op, have, want) for have in values)
    return hit != (comparator in NEGATIVES)


def stored(record: dict[str, Any], types: dict[str, str]) -> dict[str, Any]:
    """A listed record in the stored form `criteria.evaluate` takes."""
    out: dict[str, Any] = {"id": int(record["id"])}
    for name, value in record.items():
        if name in ("Created_Time", "Modified_Time"):
            out[name] = int(datetime.fromisoformat(value).timestamp()) * 1000
        elif value is not None and types.get(name) == "datetime":
            out[name] = datetime.fromisoformat(value).astimezone(UTC).isoformat()
        elif name != "id" and value is not None:
            out[name] = value
    return out


# -- criteria -------------------------------------------------------------------------------------

def ascii_upper(text: str) -> str:
    return "".join(c.upper() if c.isascii() else c for c in text)


def criteria_values(ds: DataSet, name: str) -> st.SearchStrategy[Any]:
    """Values to compare a field with: what records hold, near misses, case variants."""
    k = KINDS[name]
    if k == "id":
        ids = sorted({int(r["id"]) + d for r in ds.records[::7] for d in (-1, 0, 1)})
        return st.sampled_from(ids) | st.sampled_from(ids).map(str)
    if name in TEXTS or name == "Tags":
        pool = TEXTS.get(name, TAGS)
        # ASCII case variants only: "É" vs "é" is left open (see the module docstring).
        variants = {v for w in pool for v in (w, ascii_upper(w), w[:1], w[-1:], w[1:])}
        variants |= {"%", "_", "\\", " ", "x"}
        return st.sampled_from(sorted(v for v in variants if v))
    if k == "integer":
        return st.sampled_from(sorted({n + d for n in NUMBERS[name] for d in (-1, 0, 1)}))
    if k == "number":
        base = NUMBERS[name] + [0.25, 2, -3]
        return st.sampled_from(base) | st.sampled_from(base).map(lambda n: n + 0.5)
    if k == "date":
        days = {date.fromisoformat(d) + timedelta(days=n) for d in DATES for n in (-1, 0, 1)}
        return st.sampled_from(sorted(d.isoformat() for d in days))
    if k == "datetime":
        if name == "Met_At":
            moments = MOMENTS
        else:
            moments = sorted({datetime.fromisoformat(r[name]) for r in ds.records})
        return st.builds(show, st.sampled_from(moments), st.sampled_from(ZONES)) | st.builds(
            show, st.sampled_from(moments).map(lambda m: m + timedelta(seconds=1)),
            st.sampled_from(ZONES))
    if k == "boolean":
        return st.booleans()
    targets = [ds.owner, *ds.accounts, "1000000000000000001"]
    return st.sampled_from(targets) | st.sampled_from(targets).map(int)


@st.composite
def leaves(draw: st.DrawFn, ds: DataSet) -> dict[str, Any]:
    name = draw(st.sampled_from(sorted(KINDS)))
    comparator = draw(st.sampled_from(COMPARATORS[kind(name)]))
    values = criteria_values(ds, name)
    value: Any
    if comparator in ("equal", "not_equal") and kind(name) != "boolean" and draw(
            st.integers(0, 3)) == 0:
        value = EMPTY
    elif comparator in ("in", "not_in"):
        value = draw(st.lists(values, min_size=1, max_size=3))
    elif comparator in ("between", "not_between"):
        value = sorted(draw(st.lists(values, min_size=2, max_size=2)),
                       key=lambda v: comparable(name, v))
        if draw(st.integers(0, 5)) == 0:
            value.reverse()  # an empty range
    else:
        value = draw(values)
    # The older leaf form (SDK2, v2 docs) now and then.
    if draw(st.integers(0, 4)) == 0:
        return {"api_name": name, "comparator": comparator, "value": value}
    return {"field": {"api_name": name}, "comparator": comparator, "value": value}


def trees(ds: DataSet) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        leaves(ds),
        lambda kids: st.builds(lambda op, items: {"group_operator": op, "group": items},
                               st.sampled_from(["and", "or"]),
                               st.lists(kids, min_size=2, max_size=3)),
        max_leaves=6)


# -- running jobs ---------------------------------------------------------------------------------

def export_ids(api: httpx.Client, queries: list[dict[str, Any]]) -> list[list[str]]:
    """Run one job per criteria, all at once; the Id column of each CSV."""
    job_ids = []
    for criteria in queries:
        r = api.post("/crm/bulk/v8/read", json={"query": {
            "module": {"api_name": "Leads"}, "fields": ["Last_Name"], "criteria": criteria}})
        assert r.status_code == 201, r.text
        job_ids.append(r.json()["data"][0]["details"]["id"])
    out = []
    deadline = time.monotonic() + 60
    for job_id in job_ids:
        while True:
            job = api.get(f"/crm/bulk/v8/read/{job_id}").json()["data"][0]
            if job["state"] not in ("ADDED", "QUEUED", "IN PROGRESS"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.02)
        assert job["state"] == "COMPLETED", job
        r = api.get(f"/crm/bulk/v8/read/{job_id}/result")
        assert r.status_code == 200, r.text
        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
            rows = list(csv.reader(io.StringIO(zf.read(f"{job_id}.csv").decode())))
        assert rows[0] == ["Id", "Last_Name"]
        assert job["result"]["count"] == len(rows) - 1
        out.append([row[0] for row in rows[1:]])
    return out


def check(ds: DataSet, queries: list[dict[str, Any]]) -> None:
    for criteria, got in zip(queries, export_ids(ds.api, queries), strict=True):
        expected = {r["id"] for r in ds.records if holds(criteria, r)}
        node = crit.parse_bulk(criteria, ds.types)
        evaluated = {r["id"] for r in ds.records if crit.evaluate(node, stored(r, ds.types))}
        assert got == sorted(got, key=int), criteria
        assert sorted(set(got), key=int) == sorted(expected, key=int), criteria
        assert evaluated == expected, criteria


# -- tests ----------------------------------------------------------------------------------------

class TestCriteriaProperty:
    """For any criteria, the export holds exactly the records the oracle picks."""

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def test_export_equals_filter(self, dataset: DataSet, data: st.DataObject) -> None:
        check(dataset, data.draw(st.lists(trees(dataset), min_size=1, max_size=4)))

    def test_data_set_collides(self, dataset: DataSet) -> None:
        """The data hold what the criteria aim at: empties, case variants, close values."""
        records = dataset.records
        assert len(records) == 3 + 3 * 18 - 4
        for name in set(KINDS) - {"Owner", "id"}:  # one user: the same Owner everywhere
            # a checkbox is true or false (never set: false), so it has only two values
            assert len({repr(r[name]) for r in records}) >= (2 if KINDS[name] == "boolean"
                                                              else 3), name
        assert {r["Company"] for r in records} >= {None, "", "a", "A"}
        assert {r["Big"] for r in records} >= {2**53, 2**53 + 1}
        assert len({r["Created_Time"] for r in records}) >= 3
        assert any(r["Created_Time"] != r["Modified_Time"] for r in records)


class TestTable:
    """The comparators spec/bulk-read.md §3 does not allow for a field's type are refused."""

    def test_other_comparators_are_refused(self, dataset: DataSet) -> None:
        everything = sorted(set().union(*COMPARATORS.values()))
        refused = []
        for name in sorted(KINDS):
            for comparator in everything:
                if comparator in COMPARATORS[kind(name)]:
                    continue
                many = comparator in ("in", "not_in", "between", "not_between")
                r = dataset.api.post("/crm/bulk/v8/read", json={"query": {
                    "module": "Leads", "criteria": leaf(name, comparator,
                                                        ["1", "2"] if many else "1")}})
                assert r.status_code == 400, (name, comparator, r.text)
                (error,) = r.json()["data"]
                assert error["code"] == "FIELD_COMPARATOR_IN_CRITERIA_NOT_SUPPORTED"
                assert error["details"]["api_name"] == name
                refused.append((name, comparator))
        assert ("Email_Opt_Out", "not_equal") in refused and ("Owner", "contains") in refused


def leaf(name: str, comparator: str, value: Any) -> dict[str, Any]:
    return {"field": {"api_name": name}, "comparator": comparator, "value": value}


EDGES = [
    leaf("Company", "equal", "a"),  # case-insensitive: "a" and "A"
    leaf("Company", "contains", "%"),  # LIKE's specials are literal
    leaf("Company", "contains", "_"),
    leaf("Company", "starts_with", "a\\"),
    leaf("Company", "ends_with", "B"),
    leaf("Company", "not_equal", "a"),  # includes null and ""
    leaf("Company", "equal", EMPTY),  # missing, null and ""
    leaf("Company", "not_equal", EMPTY),
    leaf("Tags", "equal", EMPTY),  # null and []
    leaf("Tags", "equal", "a b"),
    leaf("Tags", "not_contains", "a"),
    leaf("No_of_Employees", "not_equal", 0),
    leaf("No_of_Employees", "equal", EMPTY),
    leaf("Big", "equal", 2**53 + 1),  # not rounded through a double
    leaf("Big", "greater_than", 2**53),
    leaf("Annual_Revenue", "equal", 1),  # 1 == 1.0
    leaf("Annual_Revenue", "in", [0.5, 100]),
    leaf("Due_Date", "between", ["2024-02-28", "2024-03-01"]),
    leaf("Due_Date", "not_between", ["2024-02-29", "2024-02-29"]),
    leaf("Met_At", "equal", "2024-03-01T15:30:00+05:30"),  # 10:00:00Z in another offset
    leaf("Met_At", "less_equal", "2024-03-01T02:00:00-08:00"),
    leaf("Email_Opt_Out", "equal", False),
    {"group_operator": "and", "group": [
        leaf("Email_Opt_Out", "equal", True),
        {"group_operator": "or", "group": [leaf("Lead_Source", "equal", "COLD CALL"),
                                           leaf("Tags", "in", ["b", "c%"])]}]},
]


class TestEdges:
    """Hand-picked criteria at the edges the property aims at."""

    def test_edges(self, dataset: DataSet) -> None:
        check(dataset, EDGES)

    def test_created_and_modified_time(self, dataset: DataSet) -> None:
        first = min(datetime.fromisoformat(r["Created_Time"]) for r in dataset.records)
        second = first + timedelta(seconds=1)
        check(dataset, [
            leaf("Created_Time", "equal", first.isoformat()),
            leaf("Created_Time", "greater_than", first.astimezone(UTC).isoformat()),
            leaf("Created_Time", "between", [first.isoformat(), second.isoformat()]),
            leaf("Modified_Time", "not_in", [first.isoformat(), second.isoformat()]),
        ])

    def test_lookups(self, dataset: DataSet) -> None:
        one, two = dataset.accounts
        check(dataset, [
            leaf("Account", "equal", one),
            leaf("Account", "not_in", [int(one), two]),
            leaf("Account", "equal", EMPTY),
            leaf("Owner", "equal", dataset.owner),
            leaf("Owner", "not_equal", dataset.owner),
        ])


def test_table_covers_every_comparator() -> None:
    assert {kind(n) for n in KINDS} == set(COMPARATORS)
    assert set().union(*COMPARATORS.values()) == set(crit.BULK_COMPARATORS)
