"""Bulk Read limits under pressure, against the real server on both backends."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import httpx

from tests.bulk.test_bulk_read import _served
from tests.conftest import Live, now_ms, run_flow


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


def test_concurrent_creates_never_pass_the_active_job_limit(database_url: str) -> None:
    """Counting the org's active jobs and adding one are serialised: 40 creates at once
    with a limit of 10 give exactly 10 jobs, the rest 429 (in three orgs, for the race to
    have its chances; then once more in the first, full org: no job at all)."""
    from crmwatch.catalog import standard_modules
    from crmwatch.domain import scopes as sc
    from crmwatch.store import tenants

    with _served(database_url, workers=False, bulk_max_active_jobs=10) as (live, _api):
        tokens = [live.token()]
        for name in ("second", "third"):
            def setup(name: str = name) -> Any:
                org = yield from tenants.create_org(name, "UTC", standard_modules(), now_ms())
                return (yield from tenants.create_client(
                    org, sc.render(sc.parse_scopes(",".join(sc.DEFAULT_SCOPES))), "t",
                    now_ms()))
            creds = run_flow(live.database_url, setup())
            tokens.append(httpx.post(live.base_url + "/oauth/v2/token", data={
                "grant_type": "refresh_token", "client_id": creds.client_id,
                "client_secret": creds.client_secret,
                "refresh_token": creds.refresh_token}).json()["access_token"])

        def create(token: str) -> int:
            with httpx.Client(base_url=live.base_url, timeout=60, headers={
                    "Authorization": f"Zoho-oauthtoken {token}"}) as c:
                return c.post("/crm/bulk/v8/read",
                              json={"query": {"module": "Leads"}}).status_code

        for token, expected in [(t, 10) for t in tokens] + [(tokens[0], 0)]:
            with concurrent.futures.ThreadPoolExecutor(40) as pool:
                codes = list(pool.map(create, [token] * 40))
            assert set(codes) <= {201, 429}
            assert codes.count(201) == expected, codes
