"""Bulk Read limits under pressure, against the real server on both backends."""

from __future__ import annotations

import httpx

from tests.conftest import Live


def test_deeply_nested_criteria_are_refused(live: Live, api: httpx.Client) -> None:
    """480 nested groups: INVALID_CRITERIA in Zoho's shape, not a RecursionError's 500."""
    node = '{"field": {"api_name": "Last_Name"}, "comparator": "equal", "value": "A"}'
    other = '{"field": {"api_name": "Last_Name"}, "comparator": "equal", "value": "B"}'
    for _ in range(480):
        node = f'{{"group_operator": "and", "group": [{node}, {other}]}}'
    body = f'{{"query": {{"module": "Leads", "criteria": {node}}}}}'
    r = api.post("/crm/bulk/v8/read", content=body.encode())
    assert r.status_code == 400, r.text
    err = r.json()["data"][0]
    assert err["status"] == "error" and err["code"] == "INVALID_CRITERIA", err
    assert err["details"]["limit"] == 32
