"""`crmwatch sync` live figures: steady-state latency, catch-up, and Airbyte's connector.

    python bench/sync_live_bench.py [--records 200000] [--rate 500] [--seconds 60]
        [--changes 100000] [--plain-zoho] [--airbyte] [--verify]

One `crmwatch serve` (SQLite) on a copy of bench/bulk_bench.py's seeded database (N Leads,
the same cache as bench/sync_bench.py), the server, the sync, the load generator and the
mirror all on this machine (say so beside every figure). In order:

1. **Initial sync**: `crmwatch sync run --module Leads` into an empty SQLite mirror, until
   the snapshot is marked done (the same figure as bench/sync_bench.py, for the record).
2. **Steady state** (`--rate` record writes/s for `--seconds`): single-record creates and
   updates (`PUT /crm/v8/Leads/{id}` of a random seeded record), alternately, each with a
   unique marker (`Last_Name` of a create, `Description` of an update), paced open-loop by
   an asyncio load generator with up to 64 writes in flight. The latency of a write is from
   the moment its answer arrived (the source has committed by then) to the first poll of
   the mirror that shows its marker; a thread polls the mirror (read-only, by primary key,
   only the ids still awaited) every 2 ms. A record written again before its first write
   was seen counts as superseded, not as seen.
3. **Catch-up** (`--changes` changes): the sync is stopped (SIGTERM) while streaming; then
   80% updates, 10% creates and 10% deletes of distinct records are made, 100 per request
   and four requests at a time; then the sync is started again, and the time from its
   start until the mirror holds every change (marker counts and the row count, polled every
   0.2 s) is the catch-up time. `--verify` then runs `crmwatch sync verify` and records its
   answer and time.
4. **Airbyte** (`--airbyte`): `airbyte-source-zoho-crm` 0.3.6 (the `make clients-test`
   venv, `--airbyte-python`) full refresh of Leads from the same server, pointed at it by
   clients_extra/airbyte_local.py, with `CRMWATCH_DISCRETE_PAGE_LIMIT=0` set for the server
   so that page-based listing passes 2,000 records (the sync does not list by page). Its
   records are counted as they stream; `--airbyte-timeout` stops it, and the figure is
   then records per second so far.

With `--plain-zoho` the sync runs with that flag (no change feed, no sequence headers).
Results go to bench/results/sync-live-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bulk_bench as bb
import records_bench as rb
import sync_bench as sb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


class Sync:
    """A `crmwatch sync run` process on one mirror."""

    def __init__(self, base_url: str, creds: dict[str, str], mirror: Path, tmp: Path,
                 plain: bool) -> None:
        self.env = dict(os.environ, ZOHO_API_URL=base_url, ZOHO_CLIENT_ID=creds["client_id"],
                        ZOHO_CLIENT_SECRET=creds["client_secret"],
                        ZOHO_REFRESH_TOKEN=creds["refresh_token"])
        self.mirror, self.tmp, self.plain = mirror, tmp, plain
        self.port = rb.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> float:
        self.starts += 1
        cmd = [sys.executable, "-m", "crmwatch", "sync", "run", "--module", "Leads",
               "--database", f"sqlite:///{self.mirror}", "--listen",
               f"127.0.0.1:{self.port}", "--poll-seconds", "0.05"]
        if self.plain:
            cmd.append("--plain-zoho")
        out = open(self.tmp / f"sync-{self.starts}.log", "wb")  # noqa: SIM115
        started = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            text = (self.tmp / f"sync-{self.starts}.log").read_text()[-2000:]
            raise RuntimeError(f"sync exited: {text}")


def ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5,
                           check_same_thread=False)


# -- steady state --------------------------------------------------------------------------

class Watch(threading.Thread):
    """Polls the mirror for awaited markers: id -> (column, marker, answered at)."""

    def __init__(self, mirror: Path) -> None:
        super().__init__(daemon=True)
        self.mirror = mirror
        self.lock = threading.Lock()
        self.awaited: dict[str, tuple[str, str, float]] = {}
        self.latencies: list[float] = []
        self.superseded = 0
        self.stop = threading.Event()

    def expect(self, rid: str, column: str, marker: str, at: float) -> None:
        with self.lock:
            if rid in self.awaited:
                self.superseded += 1
            self.awaited[rid] = (column, marker, at)

    def run(self) -> None:
        conn = ro(self.mirror)
        while not self.stop.is_set():
            with self.lock:
                wanted = dict(self.awaited)
            if wanted:
                ids = list(wanted)
                for i in range(0, len(ids), 500):
                    part = ids[i:i + 500]
                    rows = conn.execute(
                        'SELECT id, "Last_Name", "Description" FROM "Leads" WHERE id IN '
                        f"({','.join('?' * len(part))})", part).fetchall()
                    now = time.monotonic()
                    with self.lock:
                        for rid, last_name, description in rows:
                            entry = self.awaited.get(rid)
                            if entry is None:
                                continue
                            column, marker, at = entry
                            value = last_name if column == "Last_Name" else description
                            if value == marker:
                                self.latencies.append(now - at)
                                del self.awaited[rid]
            time.sleep(0.002)
        conn.close()


async def steady(base_url: str, token: str, ids: list[str], watch: Watch, rate: float,
                 seconds: float) -> dict[str, Any]:
    headers = {"Authorization": f"Zoho-oauthtoken {token}"}
    errors = 0
    done = 0
    inflight = asyncio.Semaphore(64)
    rng = random.Random(7)

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal errors, done
        marker = f"steady-{n}"
        try:
            if n % 2 == 0:
                async with session.post(f"{base_url}/crm/v8/Leads", json={"data": [
                        {"Last_Name": marker, "Company": "Steady"}]}) as resp:
                    body = await resp.json()
                    at = time.monotonic()
                    if resp.status != 201:
                        errors += 1
                        return
                    rid = str(body["data"][0]["details"]["id"])
                    watch.expect(rid, "Last_Name", marker, at)
            else:
                rid = rng.choice(ids)
                async with session.put(f"{base_url}/crm/v8/Leads/{rid}", json={"data": [
                        {"Description": marker}]}) as resp:
                    await resp.read()
                    at = time.monotonic()
                    if resp.status != 200:
                        errors += 1
                        return
                    watch.expect(rid, "Description", marker, at)
            done += 1
        finally:
            inflight.release()

    async with aiohttp.ClientSession(headers=headers,
                                     connector=aiohttp.TCPConnector(limit=64)) as session:
        tasks = []
        start = time.monotonic()
        n = 0
        while True:
            due = start + n / rate
            now = time.monotonic()
            if due - start >= seconds:
                break
            if due > now:
                await asyncio.sleep(due - now)
            await inflight.acquire()
            tasks.append(asyncio.create_task(one(session, n)))
            n += 1
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    return {"offered_per_s": rate, "sent": n, "ok": done, "errors": errors,
            "achieved_per_s": round(done / elapsed, 1), "seconds": round(elapsed, 1)}


# -- catch-up ------------------------------------------------------------------------------

async def make_changes(base_url: str, token: str, ids: list[str], changes: int
                       ) -> dict[str, int]:
    headers = {"Authorization": f"Zoho-oauthtoken {token}"}
    rng = random.Random(11)
    n_update, n_create = int(changes * 0.8), int(changes * 0.1)
    n_delete = changes - n_update - n_create
    picked = rng.sample(ids, n_update + n_delete)
    updates, deletes = picked[:n_update], picked[n_update:]
    jobs: list[tuple[str, str, Any]] = []
    for i in range(0, n_update, 100):
        part = updates[i:i + 100]
        jobs.append(("PUT", "/crm/v8/Leads", {"data": [
            {"id": rid, "Description": f"cu-{i + k}"} for k, rid in enumerate(part)]}))
    for i in range(0, n_create, 100):
        jobs.append(("POST", "/crm/v8/Leads", {"data": [
            {"Last_Name": f"cu-new-{i + k}", "Company": "Catch-up"}
            for k in range(min(100, n_create - i))]}))
    for i in range(0, n_delete, 100):
        jobs.append(("DELETE", "/crm/v8/Leads?ids=" + ",".join(deletes[i:i + 100]), None))
    rng.shuffle(jobs)
    queue: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    failures = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while not queue.empty():
            method, path, body = queue.get_nowait()
            async with session.request(method, base_url + path, json=body) as resp:
                await resp.read()
                if resp.status not in (200, 201):
                    failures += 1
    async with aiohttp.ClientSession(headers=headers) as session:
        await asyncio.gather(*(worker(session) for _ in range(4)))
    if failures:
        raise RuntimeError(f"{failures} change requests failed")
    return {"updates": n_update, "creates": n_create, "deletes": n_delete}


def caught_up(mirror: Path, made: dict[str, int], rows: int) -> bool:
    try:
        conn = ro(mirror)
    except sqlite3.Error:
        return False
    try:
        n_upd = conn.execute("SELECT COUNT(*) FROM \"Leads\" WHERE \"Description\" LIKE 'cu-%'"
                             ).fetchone()[0]
        n_new = conn.execute("SELECT COUNT(*) FROM \"Leads\" WHERE \"Last_Name\" LIKE 'cu-new-%'"
                             ).fetchone()[0]
        total = conn.execute('SELECT COUNT(*) FROM "Leads"').fetchone()[0]
        return bool(n_upd == made["updates"] and n_new == made["creates"] and total == rows)
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def mirror_rows(mirror: Path) -> int:
    conn = ro(mirror)
    try:
        return int(conn.execute('SELECT COUNT(*) FROM "Leads"').fetchone()[0])
    finally:
        conn.close()


# -- Airbyte -------------------------------------------------------------------------------

def airbyte(python: Path, base_url: str, creds: dict[str, str], tmp: Path, timeout: float
            ) -> dict[str, Any]:
    from clients_extra.harness import child_env
    from clients_extra.test_airbyte import catalog_for, stream_name

    work = tmp / "airbyte"
    work.mkdir()
    config = {"client_id": creds["client_id"], "client_secret": creds["client_secret"],
              "refresh_token": creds["refresh_token"], "dc_region": "US",
              "environment": "Production"}
    (work / "config.json").write_text(json.dumps(config))
    env = child_env(work, CRMWATCH_BASE_URL=base_url)
    entry = [str(python), str(REPO / "clients_extra" / "airbyte_local.py")]
    found = subprocess.run([*entry, "discover", "--config", str(work / "config.json")],
                           capture_output=True, text=True, env=env, cwd=work, timeout=300,
                           check=False)

    class Found:  # what catalog_for reads of a run
        def of_type(self, kind: str) -> list[dict[str, Any]]:
            out = []
            for line in found.stdout.splitlines():
                if line.startswith("{"):
                    message = json.loads(line)
                    if message.get("type") == kind:
                        out.append(message)
            return out
    catalog = catalog_for(Found(), stream_name("Leads"), "full_refresh")  # type: ignore[arg-type]
    (work / "catalog.json").write_text(json.dumps(catalog))
    started = time.monotonic()
    proc = subprocess.Popen([*entry, "read", "--config", str(work / "config.json"),
                             "--catalog", str(work / "catalog.json")], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, cwd=work)
    records = 0
    finished = True
    assert proc.stdout is not None
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    last_error = None
    for line in proc.stdout:
        if b'"type": "RECORD"' in line or b'"type":"RECORD"' in line:
            records += 1
        elif b'"level": "ERROR"' in line or b'"status": "INCOMPLETE"' in line:
            last_error = line[:300].decode(errors="replace")
    code = proc.wait()
    timer.cancel()
    seconds = time.monotonic() - started
    if code != 0 and seconds >= timeout:
        finished = False
    return {"records": records, "seconds": round(seconds, 1),
            "records_per_s": round(records / seconds), "finished": finished, "exit": code,
            "last_error": last_error}


# -- the run -------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cache-dir", type=Path, default=Path("/var/tmp/crmwatch-bulk-bench"))
    p.add_argument("--reseed", action="store_true")
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--changes", type=int, default=100_000)
    p.add_argument("--plain-zoho", action="store_true")
    p.add_argument("--verify", action="store_true")
    p.add_argument("--airbyte", action="store_true")
    p.add_argument("--airbyte-python", type=Path,
                   default=REPO / ".venv-airbyte" / "bin" / "python")
    p.add_argument("--airbyte-timeout", type=float, default=1800.0)
    p.add_argument("--skip", choices=["steady", "catchup"], action="append", default=[])
    args = p.parse_args(argv)
    result: dict[str, Any] = {"records": args.records, "plain_zoho": args.plain_zoho,
                              "load_before": os.getloadavg()}
    if args.airbyte:
        os.environ["CRMWATCH_DISCRETE_PAGE_LIMIT"] = "0"  # the server's, for the connector
    with tempfile.TemporaryDirectory(prefix="sync-live-") as tmpname:
        tmp = Path(tmpname)
        with bb.sqlite_database(args, tmp) as db:
            server = rb.Server(db.url, rb.free_port(), tmp / "server.log")
            server.start(timeout=300)
            try:
                creds = sb.make_client(db.url)
                token = rb.access_token(server.base_url, creds)
                ids = [str(i) for i in db.ids]
                mirror = tmp / "mirror.db"
                sync = Sync(server.base_url, creds, mirror, tmp, args.plain_zoho)
                t0 = sync.start()
                while not sb.mirror_done(mirror, args.records)[1]:
                    sync.alive()
                    time.sleep(0.1)
                result["initial_seconds"] = round(time.monotonic() - t0, 2)
                log(f"initial sync {result['initial_seconds']} s")
                if "steady" not in args.skip:
                    watch = Watch(mirror)
                    watch.start()
                    load = asyncio.run(steady(server.base_url, token, ids, watch, args.rate,
                                              args.seconds))
                    deadline = time.monotonic() + 30
                    while watch.awaited and time.monotonic() < deadline:
                        time.sleep(0.05)
                    watch.stop.set()
                    watch.join()
                    lat = watch.latencies
                    result["steady"] = {**load, "seen": len(lat), "unseen": len(watch.awaited),
                                        "superseded": watch.superseded,
                                        "p50_ms": pct(lat, 0.5), "p90_ms": pct(lat, 0.9),
                                        "p99_ms": pct(lat, 0.99), "max_ms": pct(lat, 1.0)}
                    log(f"steady {result['steady']}")
                if "catchup" not in args.skip:
                    time.sleep(1)
                    sync.stop()
                    rows_before = mirror_rows(mirror)
                    made = asyncio.run(make_changes(server.base_url, token, ids,
                                                    args.changes))
                    rows = rows_before + made["creates"] - made["deletes"]
                    log(f"made {made} while the sync was down; restarting it")
                    t0 = sync.start()
                    while not caught_up(mirror, made, rows):
                        sync.alive()
                        if time.monotonic() - t0 > 900:
                            raise RuntimeError("no catch-up after 15 minutes")
                        time.sleep(0.2)
                    result["catchup"] = {**made, "seconds": round(time.monotonic() - t0, 2)}
                    log(f"catch-up {result['catchup']}")
                if args.verify:
                    t0 = time.monotonic()
                    out = subprocess.run(
                        [sys.executable, "-m", "crmwatch", "sync", "verify", "--module", "Leads",
                         "--database", f"sqlite:///{mirror}",
                         *(["--plain-zoho"] if args.plain_zoho else [])],
                        env=sync.env, capture_output=True, text=True, timeout=1800, check=False)
                    result["verify"] = {"exit": out.returncode,
                                        "seconds": round(time.monotonic() - t0, 1),
                                        "output": out.stdout[-500:] + out.stderr[-500:]}
                    log(f"verify {result['verify']}")
                sync.stop()
                if args.airbyte:
                    result["airbyte"] = airbyte(args.airbyte_python, server.base_url, creds,
                                                tmp, args.airbyte_timeout)
                    log(f"airbyte {result['airbyte']}")
            finally:
                with_sync = locals().get("sync")
                if with_sync is not None:
                    with_sync.stop()
                server.stop()
    result["machine"] = {"cpus": os.cpu_count(), "load_after": os.getloadavg()}
    result["note"] = "server, sync, load generator and mirror on the same machine"
    out_path = REPO / "bench" / "results" / f"sync-live-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out_path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    print(f"written {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
