"""The sync as a process: refusals, ports, kill -9, lapses, restarts, new fields, mirrors
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from crmwatch.domain.modules import check_references, load_modules, merge_modules
from crmwatch.store import tenants
from crmwatch.sync.mirror import open_mirror
from tests.conftest import Live, now_ms, run_flow
from tests.sync.helpers import free_port, start_sync, status, stop_sync, wait_exact
from tests.sync.test_run import create


def log_tail(tmp_path: Path) -> str:
    path = tmp_path / "sync.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def channel(database: str) -> tuple[str, str]:
    async def go() -> tuple[str, str]:
        mirror = await open_mirror(database)
        try:
            state = await mirror.get_state()
            return state["channel_id"], state["channel_token"]
        finally:
            await mirror.close()
    return asyncio.run(go())


def inbox_size(database: str) -> int:
    async def go() -> int:
        mirror = await open_mirror(database)
        try:
            return await mirror.inbox_size()
        finally:
            await mirror.close()
    return asyncio.run(go())


class TestMirrors:
    """Both mirror databases end exact, with the public schema's typed columns."""

    def test_exact_and_typed(self, server: Live, server_api: httpx.Client, mirror_url: str,
                             tmp_path: Path) -> None:
        ids = create(server_api, 120)
        proc = start_sync(server, mirror_url, free_port(), log=tmp_path / "sync.log")
        try:
            wait_exact(server_api, mirror_url, proc=proc)
            server_api.put("/crm/v8/Leads", json={"data": [
                {"id": i, "Annual_Revenue": 5.5, "Email_Opt_Out": True} for i in ids[:10]]})
            wait_exact(server_api, mirror_url, proc=proc)
        finally:
            assert stop_sync(proc) == 0, log_tail(tmp_path)

        async def columns() -> list[Any]:
            mirror = await open_mirror(mirror_url)
            try:
                return await mirror.db.read(
                    'SELECT id, "Owner", "Annual_Revenue", "Email_Opt_Out", "No_of_Employees", '
                    '"Modified_Time", _record FROM "Leads" WHERE id = ?', (ids[0],))
            finally:
                await mirror.close()
        row = asyncio.run(columns())[0]
        record = orjson.loads(row[6])
        assert row[1] == record["Owner"]["id"] and row[2] == 5.5 and row[3] in (True, 1)
        assert row[4] == 0 and row[5] == record["Modified_Time"]


class TestRefusals:
    """Wrong token, wrong channel, garbage, huge bodies: 4xx, counted, nothing applied."""

    @pytest.mark.parametrize("plain", [False, True], ids=["crmwatch", "plain-zoho"])
    def test_refused_and_counted(self, server: Live, server_api: httpx.Client,
                                 mirror_url: str, tmp_path: Path, plain: bool) -> None:
        db = mirror_url
        ids = create(server_api, 5)
        port = free_port()
        proc = start_sync(server, db, port, *(["--plain-zoho"] if plain else []),
                          log=tmp_path / "sync.log")
        try:
            wait_exact(server_api, db, proc=proc)
            channel_id, token = channel(db)
            before = status(db)["notifications"]
            url = f"http://127.0.0.1:{port}/notify"
            good = {"channel_id": channel_id, "token": token, "module": "Leads",
                    "operation": "delete", "ids": ids[:2], "query_params": {}}
            bad = [
                orjson.dumps({**good, "token": "wrong"}),
                orjson.dumps({**good, "channel_id": "1" + channel_id}),
                b"{not json",
                orjson.dumps({**good, "ids": ["1"] * 300_000}),
            ]
            codes = [httpx.post(url, content=b, timeout=10).status_code for b in bad]
            assert codes == [403, 403, 400, 413]
            after = status(db)["notifications"]
            assert after["rejected"] - before["rejected"] == 4
            assert after["rejected_by_reason"] == {"token": 1, "channel": 1, "not_json": 1,
                                                   "too_large": 1}
            assert after["received"] == before["received"]
            time.sleep(0.5)
            wait_exact(server_api, db, proc=proc, timeout=2)  # the records are still there
            # a right one is taken: it makes the sync read the records (they still exist)
            assert httpx.post(url, content=orjson.dumps(good)).status_code == 200
            wait_exact(server_api, db, proc=proc)
        finally:
            assert stop_sync(proc) == 0, log_tail(tmp_path)

    def test_port_taken(self, server: Live, tmp_path: Path) -> None:
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        try:
            proc = start_sync(server, f"sqlite:///{tmp_path / 'm.db'}",
                              holder.getsockname()[1], log=tmp_path / "sync.log")
            assert proc.wait(30) == 2
            lines = [ln for ln in log_tail(tmp_path).splitlines() if ln.startswith("error")]
            assert len(lines) == 1 and "cannot listen" in lines[0]
        finally:
            holder.close()


class TestCrashes:
    """kill -9 at any moment, then a restart: exact again, exported once unless killed
    during the export."""

    @pytest.mark.slow
    @pytest.mark.parametrize("plain", [False, True], ids=["crmwatch", "plain-zoho"])
    def test_kill_at_random_moments(self, server: Live, server_api: httpx.Client,
                                    mirror_url: str, tmp_path: Path, plain: bool) -> None:
        db = mirror_url
        mode = ["--plain-zoho"] if plain else []
        ids = create(server_api, 2000)
        port = free_port()
        rnd = random.Random(9)
        # during the export
        proc = start_sync(server, db, port, *mode, log=tmp_path / "sync.log")
        time.sleep(rnd.uniform(0.6, 1.2))
        proc.kill()
        proc.wait()
        proc = start_sync(server, db, port, *mode, log=tmp_path / "sync.log")
        wait_exact(server_api, db, proc=proc)
        exports = status(db)["modules"][0]["snapshot"]["exports"]
        assert exports <= 2
        for round_ in range(3):  # while streaming, and right after acknowledging
            server_api.put("/crm/v8/Leads", json={"data": [
                {"id": i, "Company": f"R{round_}"} for i in rnd.sample(ids, 100)]})
            for i in rnd.sample(ids, 20):
                server_api.put(f"/crm/v8/Leads/{i}", json={"data": [{"City": f"C{round_}"}]})
            time.sleep(rnd.uniform(0.0, 0.3))
            proc.kill()
            proc.wait()
            gone = rnd.sample(ids, 10)
            ids = [i for i in ids if i not in gone]
            server_api.delete("/crm/v8/Leads", params={"ids": ",".join(gone)})
            proc = start_sync(server, db, port, *mode, log=tmp_path / "sync.log")
            wait_exact(server_api, db, proc=proc)
        try:
            assert status(db)["modules"][0]["snapshot"]["exports"] == exports
            # exact already (a catch-up may come before the redelivered notifications);
            # those are applied and leave the inbox soon after
            deadline = time.time() + 15
            while inbox_size(db) and time.time() < deadline:
                time.sleep(0.2)
            assert inbox_size(db) == 0
            wait_exact(server_api, db, proc=proc, timeout=5)
        finally:
            assert stop_sync(proc) == 0, log_tail(tmp_path)


class TestLapse:
    """Down for longer than the channel lives: exact after the restart; renewed while up."""

    @pytest.mark.slow
    @pytest.mark.parametrize("plain", [False, True], ids=["crmwatch", "plain-zoho"])
    def test_down_past_expiry(self, server: Live, server_api: httpx.Client, mirror_url: str,
                              tmp_path: Path, plain: bool) -> None:
        db = mirror_url
        ids = create(server_api, 30)
        port = free_port()
        extra = ["--channel-seconds", "4", "--margin-seconds", "2",
                 *(["--plain-zoho"] if plain else [])]
        proc = start_sync(server, db, port, *extra, log=tmp_path / "sync.log")
        wait_exact(server_api, db, proc=proc)
        first_expiry = status(db)["channel"]["expiry"]
        time.sleep(3)  # renewed half-way through its 4 s
        assert status(db)["channel"]["expiry"] != first_expiry
        assert stop_sync(proc) == 0
        time.sleep(5)  # the channel lapses
        server_api.put("/crm/v8/Leads", json={"data": [{"id": i, "Company": "Later"}
                                                       for i in ids[:5]]})
        server_api.delete("/crm/v8/Leads", params={"ids": ",".join(ids[5:8])})
        create(server_api, 4, "Late")
        proc = start_sync(server, db, port, *extra, log=tmp_path / "sync.log")
        try:
            wait_exact(server_api, db, proc=proc)
            server_api.put("/crm/v8/Leads", json={"data": [{"id": ids[9], "Company": "After"}]})
            wait_exact(server_api, db, proc=proc)
            assert status(db)["modules"][0]["snapshot"]["exports"] == 1
        finally:
            assert stop_sync(proc) == 0, log_tail(tmp_path)


class TestSourceChanges:
    """A field added at the source appears as a column, live."""

    @pytest.mark.parametrize("plain", [False, True], ids=["crmwatch", "plain-zoho"])
    def test_new_field(self, server: Live, server_api: httpx.Client, mirror_url: str,
                       tmp_path: Path, plain: bool) -> None:
        db = mirror_url
        ids = create(server_api, 10)
        proc = start_sync(server, db, free_port(), *(["--plain-zoho"] if plain else []),
                          log=tmp_path / "sync.log")
        try:
            wait_exact(server_api, db, proc=proc)

            def flow() -> Any:
                org = yield from tenants.find_org("acme")
                current, _ = yield from tenants.load_catalog(org.id)
                extra = load_modules({"modules": [{
                    "api_name": "Leads", "singular_label": "Lead", "plural_label": "Leads",
                    "fields": [
                    {"api_name": "Tier__c", "label": "Tier", "data_type": "integer"}]}]},
                    custom=True)
                merged = merge_modules(current, extra)
                check_references(merged)
                yield from tenants.save_catalog(org, merged, now_ms())
            run_flow(server.database_url, flow())
            deadline = time.time() + 20
            while time.time() < deadline:
                r = server_api.put("/crm/v8/Leads", json={"data": [{"id": ids[0], "Tier__c": 3}]})
                if r.json()["data"][0]["status"] == "success":
                    break
                time.sleep(0.5)
            wait_exact(server_api, db, proc=proc)

            async def column() -> Any:
                mirror = await open_mirror(db)
                try:
                    return await mirror.db.read('SELECT "Tier__c" FROM "Leads" WHERE id = ?',
                                                (ids[0],))
                finally:
                    await mirror.close()
            assert asyncio.run(column()) == [(3,)]
        finally:
            assert stop_sync(proc) == 0, log_tail(tmp_path)


class TestSignals:
    """SIGTERM and SIGINT stop within 10 s with exit 0, also in the middle of an export."""

    def test_stop_during_export(self, server: Live, server_api: httpx.Client,
                                tmp_path: Path) -> None:
        create(server_api, 1000)
        db = f"sqlite:///{tmp_path / 'mirror.db'}"
        proc = start_sync(server, db, free_port(), log=tmp_path / "sync.log")
        time.sleep(1.0)
        t0 = time.time()
        assert stop_sync(proc, signal.SIGINT) == 0, log_tail(tmp_path)
        assert time.time() - t0 < 10
