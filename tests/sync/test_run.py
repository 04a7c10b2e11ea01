"""`crmwatch sync run` as a process against a real server: snapshot, stream, resume."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Live
from tests.sync.helpers import free_port, start_sync, status, stop_sync, wait_exact


def mirror_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mirror.db'}"


def create(api: httpx.Client, n: int, prefix: str = "L") -> list[str]:
    ids: list[str] = []
    for start in range(0, n, 100):
        r = api.post("/crm/v8/Leads", json={"data": [
            {"Last_Name": f"{prefix}{i}", "Company": "Acme", "Email": f"{prefix}{i}@x.test",
             "Annual_Revenue": 1000.5 + i, "No_of_Employees": i, "Email_Opt_Out": i % 2 == 0}
            for i in range(start, min(n, start + 100))]})
        assert r.status_code == 201, r.text
        ids += [d["details"]["id"] for d in r.json()["data"]]
    return ids


class TestSnapshotAndStream:
    """A mirror gets every record by the snapshot, then every change by notification."""

    @pytest.mark.parametrize("plain", [False, True], ids=["crmwatch", "plain-zoho"])
    def test_snapshot_then_changes(self, live: Live, api: httpx.Client, tmp_path: Path,
                                   plain: bool) -> None:
        ids = create(api, 300)
        db = mirror_url(tmp_path)
        proc = start_sync(live, db, free_port(), *(["--plain-zoho"] if plain else []),
                          log=tmp_path / "sync.log")
        try:
            wait_exact(api, db, proc=proc)
            api.put("/crm/v8/Leads", json={"data": [{"id": ids[0], "Company": "Changed"}]})
            api.delete("/crm/v8/Leads", params={"ids": ",".join(ids[1:5])})
            create(api, 3, "New")
            wait_exact(api, db, proc=proc)
            doc = status(db)
            assert doc["mode"] == ("zoho" if plain else "crmwatch")
            assert doc["modules"][0]["snapshot"]["exports"] == 1
            assert doc["notifications"]["received"] >= 3
        finally:
            assert stop_sync(proc) == 0, (tmp_path / "sync.log").read_text()[-3000:]

    def test_restart_resumes_without_export(self, live: Live, api: httpx.Client,
                                            tmp_path: Path) -> None:
        create(api, 50)
        db = mirror_url(tmp_path)
        port = free_port()
        proc = start_sync(live, db, port, log=tmp_path / "sync.log")
        wait_exact(api, db, proc=proc)
        t0 = time.time()
        assert stop_sync(proc, signal.SIGINT) == 0
        assert time.time() - t0 < 10
        create(api, 7, "Down")
        proc = start_sync(live, db, port, log=tmp_path / "sync.log")
        try:
            wait_exact(api, db, proc=proc)
            assert status(db)["modules"][0]["snapshot"]["exports"] == 1
        finally:
            assert stop_sync(proc) == 0
