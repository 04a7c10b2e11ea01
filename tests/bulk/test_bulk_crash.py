"""kill -9 the server during an export: after the restart the job is taken over and
completes with every record, and no partial file is left behind."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bulk.test_bulk_read import download, wait_done
from tests.conftest import now_ms, run_flow
from tests.test_cli import free_port, wait_up

_WORDS = random.Random(7).choices(["lorem", "ipsum", "dolor", "sit", "amet", "consectetur",
                                     "adipiscing", "elit", "sed", "do", "eiusmod"], k=5000)
BIG = " ".join(_WORDS)[:31_000]  # ~31 KB a record: the export takes a while


def _server(db: str, port: int, results: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "CRMWATCH_DATABASE_URL": db, "CRMWATCH_PORT": str(port),
           "CRMWATCH_BULK_LEASE_SECONDS": "1", "CRMWATCH_BULK_RESULTS_DIR": str(results),
           "CRMWATCH_LOG_LEVEL": "error"}
    proc = subprocess.Popen([sys.executable, "-m", "crmwatch", "serve"], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_up(f"http://127.0.0.1:{port}", proc)
    return proc


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def nices(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        with contextlib.suppress(OSError):
            out.append(int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16]))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def all_ids(api: httpx.Client) -> list[str]:
    """Every Lead id in ascending order, through the records API's page tokens."""
    ids: list[str] = []
    params: dict[str, Any] = {"fields": "Last_Name", "sort_by": "id", "sort_order": "asc",
                              "per_page": 200}
    while True:
        body = api.get("/crm/v8/Leads", params=params).json()
        ids += [d["id"] for d in body["data"]]
        if not body["info"]["more_records"]:
            return ids
        params["page_token"] = body["info"]["next_page_token"]


def _client(url: str, creds: Any) -> httpx.Client:
    token = httpx.post(url + "/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "refresh_token": creds.refresh_token}).json()["access_token"]
    return httpx.Client(base_url=url, timeout=60,
                        headers={"Authorization": f"Zoho-oauthtoken {token}"})


def test_kill_during_export(database_url: str, tmp_path: Path) -> None:
    from crmwatch.catalog import standard_modules
    from crmwatch.domain import scopes as sc
    from crmwatch.store import tenants

    def setup() -> Any:
        org = yield from tenants.create_org("crash", "UTC", standard_modules(), now_ms())
        return (yield from tenants.create_client(
            org, sc.render(sc.parse_scopes(",".join(sc.DEFAULT_SCOPES))), "t", now_ms()))

    creds = run_flow(database_url, setup())
    results = tmp_path / "results"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _server(database_url, port, results)
    try:
        with _client(url, creds) as api:
            for b in range(25):
                r = api.post("/crm/v8/Leads", json={"data": [
                    {"Last_Name": f"K{b}-{i}", "Description": BIG} for i in range(100)]})
                assert r.status_code == 201, r.text[:300]
            expected = all_ids(api)
            seen = set()
            for _attempt in range(3):  # until the kill lands while the export runs
                r = api.post("/crm/bulk/v8/read", json={"query": {"module": "Leads"}})
                job_id = r.json()["data"][0]["details"]["id"]
                state = "ADDED"
                while state == "ADDED":
                    state = api.get(f"/crm/bulk/v8/read/{job_id}").json()["data"][0]["state"]
                # the export process starts (spawn) and lowers its priority
                deadline = time.time() + 20
                while 10 not in nices(children(proc.pid)) and time.time() < deadline:
                    time.sleep(0.05)
                state = api.get(f"/crm/bulk/v8/read/{job_id}").json()["data"][0]["state"]
                seen.add(state)
                if state == "IN PROGRESS":
                    break
            assert state == "IN PROGRESS", f"every export ended before the kill: {seen}"
        orphans = children(proc.pid)  # the export process (and multiprocessing's helper)
        assert 10 in nices(orphans), "the export runs in a child process, at nice +10"
        proc.send_signal(signal.SIGKILL)
        proc.wait(20)
        deadline = time.time() + 15
        while any(alive(p) for p in orphans):
            assert time.time() < deadline, "the export process outlived its server"
            time.sleep(0.1)
        if proc.stderr is not None:
            proc.stderr.close()

        proc = _server(database_url, port, results)
        with _client(url, creds) as api:
            job = wait_done(api, job_id, timeout=90)
            assert job["state"] == "COMPLETED", job
            assert job["result"]["count"] == len(expected) == 2500
            rows = download(api, job_id)
            assert [row[0] for row in rows[1:]] == expected
            assert all(row[rows[0].index("Description")] == BIG for row in rows[1:])
        leftovers = [p.name for p in results.iterdir() if p.name.startswith(job_id)]
        assert leftovers == [f"{job_id}.zip"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        if proc.stderr is not None:
            proc.stderr.close()
