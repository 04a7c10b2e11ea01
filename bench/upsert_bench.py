"""How long a 100-record upsert with duplicate checks holds the writer, on SQLite or PostgreSQL.

    python bench/upsert_bench.py [--backend sqlite|postgres] [--count 20000] [--runs 3]

Seeds `--count` Leads (`crmwatch seed`) into a fresh database (a SQLite file in a temp dir,
or a throwaway PostgreSQL cluster from tests/pgcluster.py), starts `crmwatch serve` on a
loopback port, then, for each run, times:

    upsert-new   POST /crm/v8/Leads/upsert, 100 Leads whose Email matches no record
    upsert-hit   POST /crm/v8/Leads/upsert, 100 Leads whose Email matches a seeded Lead
    bystander    a one-Lead POST sent while upsert-new runs (what every other client waits)

`duplicate_check_fields` is `["Email"]`. Figures are wall-clock milliseconds seen by the
client, printed as one line per run. Everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
CRMWATCH = [sys.executable, "-m", "crmwatch"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str], env: dict[str, str]) -> str:
    return subprocess.run(CRMWATCH + args, env=env, check=True, capture_output=True,
                          text=True).stdout


def _emails(api: httpx.Client, n: int) -> list[str]:
    r = api.get("/crm/v8/Leads", params={"per_page": n, "fields": "Email"})
    return [d["Email"] for d in r.json()["data"] if d.get("Email")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="crmwatch-upsert-"))
    cluster: Any = None
    server: subprocess.Popen[bytes] | None = None
    try:
        if opts.backend == "sqlite":
            url = f"sqlite:///{tmp / 'crm.db'}"
        else:
            sys.path.insert(0, str(REPO))
            from tests import pgcluster

            cluster = pgcluster.start()
            url = cluster.dsn()
        port = _free_port()
        env = {**os.environ, "CRMWATCH_DATABASE_URL": url, "CRMWATCH_PORT": str(port)}
        creds = json.loads(_run(["client", "create", "--json"], env))
        started = time.perf_counter()
        _run(["seed", "--module", "Leads", "--count", str(opts.count), "--seed", "1"], env)
        print(f"{opts.backend}: seeded {opts.count} Leads in "
              f"{time.perf_counter() - started:.1f} s")
        server = subprocess.Popen([*CRMWATCH, "serve"], env=env, stdout=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                httpx.get(base + "/crmwatch/v1/ping")
                break
            except httpx.TransportError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        token = httpx.post(base + "/oauth/v2/token", data={
            "grant_type": "refresh_token", "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "refresh_token": creds["refresh_token"]}).json()["access_token"]
        headers = {"Authorization": f"Zoho-oauthtoken {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=600) as api:
            existing = _emails(api, 100)
            for run in range(opts.runs):
                tag = uuid.uuid4().hex[:8]
                new = [{"Last_Name": f"U{i}", "Email": f"u{i}.{tag}@bench.example"}
                       for i in range(100)]
                waited: list[float] = []

                def bystander(waited: list[float] = waited) -> None:
                    time.sleep(0.05)
                    t = time.perf_counter()
                    with httpx.Client(base_url=base, headers=headers, timeout=600) as c:
                        c.post("/crm/v8/Leads", json={"data": [{"Last_Name": "B"}]})
                    waited.append((time.perf_counter() - t) * 1000)

                side = threading.Thread(target=bystander)
                side.start()
                t = time.perf_counter()
                r = api.post("/crm/v8/Leads/upsert", json={
                    "data": new, "duplicate_check_fields": ["Email"]})
                new_ms = (time.perf_counter() - t) * 1000
                side.join()
                assert r.status_code in (200, 201), r.text
                hits = [{"Last_Name": f"H{run}", "Email": e} for e in existing]
                t = time.perf_counter()
                r = api.post("/crm/v8/Leads/upsert", json={
                    "data": hits, "duplicate_check_fields": ["Email"]})
                hit_ms = (time.perf_counter() - t) * 1000
                assert r.status_code in (200, 201), r.text
                print(f"{opts.backend} run {run + 1}: upsert-new {new_ms:.0f} ms, "
                      f"upsert-hit {hit_ms:.0f} ms ({len(hits)} records), "
                      f"bystander {waited[0]:.0f} ms")
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
