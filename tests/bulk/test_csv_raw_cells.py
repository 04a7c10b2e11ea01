"""Bulk Read CSV cells are exported as stored, formula-like ones included
(docs/compatibility.md: no spreadsheet-injection escaping, as Zoho exports raw values)."""

from __future__ import annotations

import httpx

from tests.bulk.test_bulk_read import add_leads, export
from tests.conftest import Live


def test_formula_like_cells_are_exported_raw(live: Live, api: httpx.Client) -> None:
    values = ["=1+2", "+49 30 1234", "-5", "@SUM(A1)", "=HYPERLINK(\"http://x\")"]
    add_leads(api, [{"Last_Name": v, "Company": v} for v in values])
    _, rows = export(api, {"module": {"api_name": "Leads"}, "fields": ["Last_Name", "Company"]})
    header, *body = rows
    assert header == ["Id", "Last_Name", "Company"]
    assert sorted((r[1], r[2]) for r in body) == sorted((v, v) for v in values)
