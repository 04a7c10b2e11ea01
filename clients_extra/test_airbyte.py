"""The Airbyte Zoho CRM source connector 0.3.6, unmodified, against `crmwatch serve`.

Each run is `.venv-airbyte/bin/python airbyte_local.py <command>` (the connector with its two
host tables pointed at the server); its stdout is Airbyte protocol JSON lines.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from clients_extra.harness import BIG, AirbyteRun, Server, prepare, run_airbyte, serve

pytestmark = pytest.mark.usefixtures("airbyte_python")

LEADS = "incremental_leads_zoho_crm_stream"
SEEDED = 450


def stream_name(module: str) -> str:
    """The connector's stream name for a module: the CDK's camel_to_snake of the class name
    `Incremental{api_name}ZohoCRMStream` (airbyte_cdk.sources.utils.casing)."""
    s = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", f"Incremental{module}ZohoCRMStream")
    return re.sub("([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def ok(run: AirbyteRun) -> AirbyteRun:
    assert run.returncode == 0 and not run.errors(), run.explain()
    assert run.other_lines == [], run.explain()
    return run


def catalog_for(run: AirbyteRun, name: str, mode: str) -> dict[str, Any]:
    (message,) = run.of_type("CATALOG")
    stream = next(s for s in message["catalog"]["streams"] if s["name"] == name)
    entry: dict[str, Any] = {
        "stream": stream,
        "sync_mode": mode,
        "destination_sync_mode": "overwrite" if mode == "full_refresh" else "append",
    }
    if mode == "incremental":
        entry["cursor_field"] = ["Modified_Time"]
    return {"streams": [entry]}


def final_state(run: AirbyteRun) -> dict[str, Any]:
    states = run.of_type("STATE")
    assert states, run.explain()
    return states[-1]["state"]  # type: ignore[no-any-return]


def cursor_of(state: dict[str, Any]) -> str:
    assert state["stream"]["stream_descriptor"]["name"] == LEADS, state
    return state["stream"]["stream_state"]["Modified_Time"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, airbyte_python: Path) -> Iterator[Server]:
    db, creds = prepare(tmp_path_factory.mktemp("airbyte"), {"Leads": SEEDED})
    with serve(db, creds) as live:
        yield live


@pytest.fixture(scope="module")
def discovered(server: Server, tmp_path_factory: pytest.TempPathFactory) -> AirbyteRun:
    return ok(run_airbyte(server, tmp_path_factory.mktemp("discover"), "discover"))


class TestCheckAndDiscover:
    def test_spec(self, server: Server, tmp_path: Path) -> None:
        run = run_airbyte(server, tmp_path, "spec")
        (spec,) = ok(run).of_type("SPEC")
        assert "dc_region" in spec["spec"]["connectionSpecification"]["properties"]

    def test_check_succeeds(
        self, server: Server, tmp_path: Path, timing: list[tuple[str, float]]
    ) -> None:
        run = ok(run_airbyte(server, tmp_path, "check"))
        assert run.of_type("CONNECTION_STATUS") == [
            {"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}}
        ]
        timing.append(("airbyte check", run.seconds))

    def test_the_unpointed_connector_cannot_leave_loopback(
        self, server: Server, tmp_path: Path
    ) -> None:
        # The safety net of every run here: with its built-in hosts the connector's token
        # request goes to the dead proxy and fails at once, instead of reaching Zoho.
        run = run_airbyte(server, tmp_path, "check", pointed_at_server=False)
        assert run.returncode != 0
        (error,) = run.errors()
        assert "accounts.zoho.com" in error["internal_message"], run.explain()
        assert "ProxyError" in error["internal_message"], run.explain()

    def test_check_with_a_wrong_secret_fails_on_the_token(
        self, server: Server, tmp_path: Path
    ) -> None:
        # crmwatch answers Zoho's {"error": "invalid_client"} without access_token; the
        # connector stops with "Error while refreshing access token" (it raises instead of
        # reporting CONNECTION_STATUS FAILED: the connector's behaviour, also against Zoho).
        run = run_airbyte(server, tmp_path, "check", config={"client_secret": "f" * 40})
        assert run.returncode != 0
        assert any(
            "Error while refreshing access token" in (e["internal_message"] or "")
            for e in run.errors()
        ), run.explain()

    def test_every_api_supported_module_is_a_stream(
        self, server: Server, discovered: AirbyteRun, timing: list[tuple[str, float]]
    ) -> None:
        timing.append(("airbyte discover", discovered.seconds))
        with server.api() as api:
            modules = api.get("/crm/v2/settings/modules").json()["modules"]
        supported = {m["api_name"] for m in modules if m["api_supported"]}
        assert {"Leads", "Contacts", "Accounts"} <= supported
        (message,) = discovered.of_type("CATALOG")
        streams = {s["name"]: s for s in message["catalog"]["streams"]}
        # No module silently dropped (a field missing a key the connector needs would drop it
        # with only a warning), and nothing extra.
        assert sorted(streams) == sorted(stream_name(m) for m in supported)
        assert not [w for w in discovered.logs("WARN") if "Metadata" in w], discovered.explain()
        for name in map(stream_name, ("Leads", "Contacts", "Accounts")):
            s = streams[name]
            assert s["supported_sync_modes"] == ["full_refresh", "incremental"]
            assert s["source_defined_cursor"] is True
            assert s["default_cursor_field"] == ["Modified_Time"]
            assert s["source_defined_primary_key"] == [["id"]]
            props = s["json_schema"]["properties"]
            assert {"id", "Modified_Time", "Created_Time"} <= set(props)
        leads = streams[LEADS]["json_schema"]["properties"]
        assert {"Last_Name", "Company", "Email"} <= set(leads)
        assert leads["Modified_Time"]["format"] == "date-time"


class TestRead:
    def test_full_refresh_reads_exactly_the_seeded_leads(
        self,
        server: Server,
        discovered: AirbyteRun,
        tmp_path: Path,
        timing: list[tuple[str, float]],
    ) -> None:
        expected = server.all_ids("Leads")
        assert len(expected) == SEEDED
        run = ok(
            run_airbyte(
                server, tmp_path, "read", catalog=catalog_for(discovered, LEADS, "full_refresh")
            )
        )
        timing.append((f"airbyte read, full refresh, {SEEDED} Leads", run.seconds))
        records = run.records(LEADS)
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids)) == SEEDED
        assert set(ids) == expected
        for r in records:
            assert isinstance(r["id"], str) and r["id"].isdigit()
            assert datetime.fromisoformat(r["Modified_Time"]).utcoffset() is not None
            assert r["Last_Name"]
        # Every record fits the schema the connector built from crmwatch's field metadata.
        # (multipleOf 0.01 from decimal_place 2 is left out: Python's float arithmetic makes
        # 8939.3 "not a multiple of 0.01"; Airbyte's Java validators use decimals.)
        schema = catalog_for(discovered, LEADS, "full_refresh")["streams"][0]["stream"]
        validator = jsonschema.validators.validator_for(schema["json_schema"])(
            schema["json_schema"]
        )
        problems = {
            (tuple(e.path), e.validator, e.message[:120])
            for r in records
            for e in validator.iter_errors(r)
            if e.validator != "multipleOf"
        }
        assert problems == set()
        assert set().union(*records) <= set(schema["json_schema"]["properties"])
        # The sync completed: a final state with the newest Modified_Time.
        newest = max(datetime.fromisoformat(r["Modified_Time"]) for r in records)
        assert datetime.fromisoformat(cursor_of(final_state(run))) == newest

    def test_incremental_read_with_state_gets_only_the_changes(
        self, tmp_path: Path, timing: list[tuple[str, float]]
    ) -> None:
        # A server of its own: this test changes records.
        # An org on India time: Modified_Time and the connector's If-Modified-Since carry
        # +05:30 (the connector keeps the cursor's own offset).
        db, creds = prepare(tmp_path / "db", {"Leads": SEEDED}, timezone="Asia/Kolkata")
        with serve(db, creds) as live:
            discovered = ok(run_airbyte(live, tmp_path / "discover", "discover"))
            catalog = catalog_for(discovered, LEADS, "incremental")
            first = ok(run_airbyte(live, tmp_path / "first", "read", catalog=catalog))
            assert {r["id"] for r in first.records(LEADS)} == live.all_ids("Leads")
            state = final_state(first)
            assert cursor_of(state).endswith("+05:30"), state
            cursor = datetime.fromisoformat(cursor_of(state))

            # The connector asks for Modified_Time >= cursor + 1 s: change records later.
            time.sleep(max(0.0, cursor.timestamp() + 1.2 - time.time()))
            with live.api() as api:
                changed = sorted(live.all_ids("Leads"))[:3]
                r = api.put(
                    "/crm/v2/Leads",
                    json={
                        "data": [
                            {"id": rid, "Company": f"Changed {i}"} for i, rid in enumerate(changed)
                        ]
                    },
                )
                assert r.status_code == 200, r.text
                r = api.post(
                    "/crm/v2/Leads",
                    json={
                        "data": [{"Last_Name": f"New {i}", "Company": "New Co"} for i in range(2)]
                    },
                )
                assert r.status_code == 201, r.text
                created = [item["details"]["id"] for item in r.json()["data"]]

            second = ok(
                run_airbyte(live, tmp_path / "second", "read", catalog=catalog, state=[state])
            )
            timing.append(("airbyte read, incremental with state, 5 changes", second.seconds))
            got = second.records(LEADS)
            assert sorted(r["id"] for r in got) == sorted(changed + created)
            assert {r["id"]: r["Company"] for r in got if r["id"] in changed} == {
                rid: f"Changed {i}" for i, rid in enumerate(changed)
            }
            newer = datetime.fromisoformat(cursor_of(final_state(second)))
            assert newer > cursor
            assert newer == max(datetime.fromisoformat(r["Modified_Time"]) for r in got)

            # Nothing changed since: the server answers 204 and the read is empty.
            third = ok(
                run_airbyte(
                    live, tmp_path / "third", "read", catalog=catalog, state=[final_state(second)]
                )
            )
            assert third.records(LEADS) == []


class TestPastTwoThousand:
    """v2 page-based listing stops at record 2000, as Zoho's does (clients.md 3.5)."""

    @pytest.mark.timeout(600)
    def test_default_limit_fails_the_sync_after_2000_records(
        self, airbyte_python: Path, big_database: tuple[str, dict[str, Any]], tmp_path: Path
    ) -> None:
        with serve(*big_database) as live:
            discovered = ok(run_airbyte(live, tmp_path / "discover", "discover"))
            run = run_airbyte(
                live,
                tmp_path / "read",
                "read",
                catalog=catalog_for(discovered, LEADS, "full_refresh"),
            )
        assert run.returncode == 1
        ids = [r["id"] for r in run.records(LEADS)]
        assert len(ids) == len(set(ids)) == 2000
        assert run.of_type("STATE") == []
        assert any("DISCRETE_PAGINATION_LIMIT_EXCEEDED" in line for line in run.logs("ERROR"))
        assert any(
            "/crm/v2/Leads?page=11" in (e["internal_message"] or "") for e in run.errors()
        ), run.explain()

    @pytest.mark.timeout(600)
    def test_opt_out_reads_every_record(
        self,
        airbyte_python: Path,
        big_database: tuple[str, dict[str, Any]],
        tmp_path: Path,
        timing: list[tuple[str, float]],
    ) -> None:
        with serve(*big_database, discrete_page_limit="0") as live:
            expected = live.all_ids("Leads")
            discovered = ok(run_airbyte(live, tmp_path / "discover", "discover"))
            run = ok(
                run_airbyte(
                    live,
                    tmp_path / "read",
                    "read",
                    catalog=catalog_for(discovered, LEADS, "full_refresh"),
                )
            )
        timing.append((f"airbyte read, full refresh, {BIG} Leads (limit lifted)", run.seconds))
        ids = [r["id"] for r in run.records(LEADS)]
        assert len(ids) == len(set(ids)) == BIG
        assert set(ids) == expected
        assert cursor_of(final_state(run))
