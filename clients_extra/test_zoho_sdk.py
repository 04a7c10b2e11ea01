"""The async `zoho` SDK 0.1.3 (httpx), unmodified, against `crmwatch serve`.

Each SDK session runs `.venv-zoho/bin/python zoho_driver.py` with a list of steps and prints
what the SDK returned together with every HTTP request it sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients_extra.harness import Server, prepare, run_zoho, serve

pytestmark = pytest.mark.usefixtures("zoho_python")

SEEDED = 450
FIELDS = ["Last_Name", "Email", "Modified_Time"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, zoho_python: Path) -> Iterator[Server]:
    db, creds = prepare(tmp_path_factory.mktemp("zoho"), {"Leads": SEEDED})
    with serve(db, creds) as live:
        yield live


def values(report: dict[str, Any]) -> list[Any]:
    """Each step's value; no step may have raised."""
    failed = [r for r in report["results"] if "exception" in r]
    assert failed == [], failed
    return [r["value"] for r in report["results"]]


def assert_stayed_local(report: dict[str, Any], server: Server) -> None:
    """Every request went to crmwatch and got an answer: the token POST, then /crm/v8/."""
    sent = report["requests"]
    assert sent, report
    assert [r for r in sent if "error" in r] == []
    token, *api = sent
    assert (token["method"], token["url"]) == ("POST", server.base_url + "/oauth/v2/token")
    assert token["status"] == 200
    for r in api:
        assert r["url"].startswith(server.base_url + "/crm/v8/"), r
        assert r["user_agent"] == "zoho-sdk/0.1.3"
    assert sum(r["url"].endswith("/oauth/v2/token") for r in sent) == 1


class TestMetadata:
    def test_modules_and_org(self, server: Server, tmp_path: Path) -> None:
        report = run_zoho(
            server,
            tmp_path,
            [{"op": "modules.list"}, {"op": "modules.get", "module": "Leads"}, {"op": "org.get"}],
        )
        modules, leads, org = values(report)
        assert_stayed_local(report, server)
        with server.api() as api:
            wire_modules = api.get("/crm/v8/settings/modules").json()["modules"]
            wire_org = api.get("/crm/v8/org").json()["org"][0]
        names = [m["api_name"] for m in modules]
        assert names == [m["api_name"] for m in wire_modules]
        assert {"Leads", "Contacts", "Accounts"} <= set(names)
        assert all(m["api_supported"] for m in modules if m["api_name"] in ("Leads", "Contacts"))
        assert leads["api_name"] == "Leads" and leads["module_name"] == "Leads"
        assert org == wire_org
        assert org["id"].isdigit() and org["company_name"] == "clients"


class TestRecords:
    def test_iter_yields_every_seeded_lead_once(
        self, server: Server, tmp_path: Path, timing: list[tuple[str, float]]
    ) -> None:
        expected = server.all_ids("Leads")
        assert len(expected) == SEEDED
        report = run_zoho(
            server, tmp_path, [{"op": "records.iter", "module": "Leads", "fields": FIELDS}]
        )
        (listed,) = values(report)
        assert_stayed_local(report, server)
        timing.append((f"zoho records.iter, {SEEDED} Leads", listed["seconds"]))
        records = listed["records"]
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids)) == SEEDED and set(ids) == expected
        for r in records:
            assert set(r) <= {"id", *FIELDS} and r["Last_Name"] and r["Modified_Time"]
        pages = [r["url"] for r in report["requests"][1:]]
        assert len(pages) == 3  # 200 + 200 + 50, stopping on info.more_records = false
        for n, url in enumerate(pages, 1):
            assert f"page={n}&" in url and "per_page=200" in url
            assert "fields=Last_Name%2CEmail%2CModified_Time" in url

    def test_create_update_delete(self, server: Server, tmp_path: Path) -> None:
        report = run_zoho(
            server,
            tmp_path / "create",
            [
                {
                    "op": "records.create",
                    "module": "Leads",
                    "data": {
                        "Last_Name": "Async Lead",
                        "Company": "Async Co",
                        "Email": "async@example.com",
                    },
                }
            ],
        )
        (created,) = values(report)
        assert (created["status"], created["code"]) == ("success", "SUCCESS")
        rid = created["details"]["id"]
        assert rid.isdigit()
        post = report["requests"][1]
        assert (post["method"], post["status"]) == ("POST", 201)
        assert post["content_type"] == "application/json"

        report = run_zoho(
            server,
            tmp_path / "update",
            [
                {
                    "op": "records.update",
                    "module": "Leads",
                    "id": rid,
                    "data": {"Company": "Renamed Co"},
                },
                {
                    "op": "records.get",
                    "module": "Leads",
                    "id": rid,
                    "fields": ["Last_Name", "Company", "Email"],
                },
            ],
        )
        updated, fetched = values(report)
        assert_stayed_local(report, server)
        assert (updated["status"], updated["code"]) == ("success", "SUCCESS")
        assert updated["details"]["id"] == rid
        put = report["requests"][1]
        assert (put["method"], put["url"], put["status"]) == (
            "PUT",
            server.base_url + "/crm/v8/Leads",
            200,
        )
        assert fetched["id"] == rid
        assert (fetched["Last_Name"], fetched["Company"], fetched["Email"]) == (
            "Async Lead",
            "Renamed Co",
            "async@example.com",
        )

        report = run_zoho(
            server, tmp_path / "delete", [{"op": "records.delete", "module": "Leads", "id": rid}]
        )
        (deleted,) = values(report)
        assert_stayed_local(report, server)
        assert (deleted["status"], deleted["code"]) == ("success", "SUCCESS")
        assert deleted["details"]["id"] == rid
        with server.api() as api:
            assert api.get(f"/crm/v8/Leads/{rid}").status_code == 204
        assert rid not in server.all_ids("Leads")


class TestApiDomainFromTheToken:
    """Without an `api_domain` setting the SDK takes the token response's `api_domain`, and
    without one there it would go to https://www.zohoapis.com (clients.md 4)."""

    def test_token_response_names_the_server(self, server: Server) -> None:
        import httpx

        body = httpx.post(
            server.base_url + "/oauth/v2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": server.client_id,
                "client_secret": server.client_secret,
                "refresh_token": server.refresh_token,
            },
        ).json()
        assert body["api_domain"] == server.base_url

    def test_sdk_without_api_domain_talks_to_crmwatch(self, server: Server, tmp_path: Path) -> None:
        report = run_zoho(
            server,
            tmp_path,
            [
                {"op": "org.get"},
                {"op": "modules.list"},
                {"op": "records.iter", "module": "Leads", "fields": ["Last_Name"]},
            ],
            api_domain=None,
        )
        org, modules, listed = values(report)
        assert_stayed_local(report, server)
        assert org["id"].isdigit() and any(m["api_name"] == "Leads" for m in modules)
        assert len(listed["records"]) == len(server.all_ids("Leads"))


class TestPastTwoThousand:
    """The SDK pages with `page` only (it ignores next_page_token), so against a server
    enforcing Zoho's limit it fails after record 2000, as against Zoho (clients.md 4)."""

    @pytest.mark.timeout(600)
    def test_iter_stops_with_the_discrete_pagination_error(
        self, zoho_python: Path, big_database: tuple[str, dict[str, Any]], tmp_path: Path
    ) -> None:
        with serve(*big_database) as live:
            report = run_zoho(
                live, tmp_path, [{"op": "records.iter", "module": "Leads", "fields": ["Last_Name"]}]
            )
        (result,) = report["results"]
        assert "DISCRETE_PAGINATION_LIMIT_EXCEEDED" in result["exception"]
        pages = report["requests"][1:]
        assert [r["status"] for r in pages] == [200] * 10 + [400]
        assert "page=11&" in pages[-1]["url"]
