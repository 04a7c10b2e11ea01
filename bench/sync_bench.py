"""`crmwatch sync` benchmark: the initial sync of N Leads into a fresh mirror, end to end.

    python bench/sync_bench.py [--records 200000] [--mirror sqlite|postgres] [--runs 1]

It takes the seeded server database of bench/bulk_bench.py (the same cache: N Leads of about
20 populated fields, on SQLite), starts `crmwatch serve` on a copy, makes a self client, then
for each run starts `crmwatch sync run --module Leads` on an empty mirror and measures, from
the process start to the moment every row is in the mirror and the snapshot is marked done:
the wall time, the peak RSS of the sync process and its snapshot producer child together
(sampled at 20 Hz; the sync's VmHWM at the end as a floor) and the CPU time of both (the
child's counted once it ended). The server runs on the same machine (say so beside every
figure). Results go to bench/results/sync-<date>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bulk_bench as bb
import records_bench as rb

REPO = Path(__file__).resolve().parent.parent


def _kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def tree_rss_kb(pid: int) -> int:
    """RSS of a process and its children (the sync's snapshot producer), in KiB."""
    return _kb(pid, "VmRSS") + sum(_kb(c, "VmRSS") for c in rb._children(pid))


def _cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
        ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        return ticks / os.sysconf("SC_CLK_TCK")
    return 0.0


def make_client(url: str) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "crmwatch", "client", "create", "--json",
                          "--database", url], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def mirror_done(path: Path, records: int) -> tuple[int, bool]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return 0, False
    try:
        rows = conn.execute('SELECT COUNT(*) FROM "Leads"').fetchone()[0]
        done = conn.execute("SELECT snapshot_done FROM _sync_modules WHERE module = 'Leads'"
                            ).fetchone()
        return int(rows), bool(done and done[0]) and rows >= records
    except sqlite3.Error:
        return 0, False
    finally:
        conn.close()


def one_run(base_url: str, creds: dict[str, str], mirror: str, mirror_path: Path | None,
            records: int, tmp: Path, n: int) -> dict[str, Any]:
    env = dict(os.environ, ZOHO_API_URL=base_url, ZOHO_CLIENT_ID=creds["client_id"],
               ZOHO_CLIENT_SECRET=creds["client_secret"],
               ZOHO_REFRESH_TOKEN=creds["refresh_token"])
    log = tmp / f"sync-{n}.log"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "crmwatch", "sync", "run", "--module", "Leads",
             "--database", mirror, "--listen", f"127.0.0.1:{rb.free_port()}",
             "--poll-seconds", "0.05"], env=env, stdout=out, stderr=subprocess.STDOUT)
    peak = 0
    stop = threading.Event()

    def sample() -> None:  # the sync and its snapshot producer process together
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_kb(proc.pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rows = 0
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sync exited: {log.read_text()[-2000:]}")
            if mirror_path is not None:
                rows, done = mirror_done(mirror_path, records)
            else:
                rows, done = pg_done(mirror, records)
            if done:
                break
            if time.monotonic() - t0 > 1800:
                raise RuntimeError("no end after 30 minutes")
            time.sleep(0.1)
        seconds = time.monotonic() - t0
        hwm = _kb(proc.pid, "VmHWM")
        cpu = _cpu_seconds(proc.pid)
    finally:
        stop.set()
        sampler.join()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    return {"seconds": round(seconds, 2), "rows": rows, "rows_per_s": round(rows / seconds),
            "peak_rss_mb": round(max(peak, hwm) / 1024, 1), "cpu_seconds": round(cpu, 2),
            "exit": code}


def pg_done(url: str, records: int) -> tuple[int, bool]:
    import asyncio

    import asyncpg

    async def go() -> tuple[int, bool]:
        try:
            conn = await asyncpg.connect(url)
        except (OSError, asyncpg.PostgresError):
            return 0, False
        try:
            rows = await conn.fetchval('SELECT COUNT(*) FROM "Leads"')
            done = await conn.fetchval(
                "SELECT snapshot_done FROM _sync_modules WHERE module = 'Leads'")
            return int(rows), bool(done) and rows >= records
        except asyncpg.PostgresError:
            return 0, False
        finally:
            await conn.close()
    return asyncio.run(go())


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--mirror", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--cache-dir", type=Path, default=Path("/var/tmp/crmwatch-bulk-bench"))
    p.add_argument("--reseed", action="store_true")
    args = p.parse_args(argv)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmpname:
        tmp = Path(tmpname)
        with bb.sqlite_database(args, tmp) as db:
            server = rb.Server(db.url, rb.free_port(), tmp / "server.log")
            server.start(timeout=300)
            cluster = None
            try:
                creds = make_client(db.url)
                for n in range(args.runs):
                    if args.mirror == "sqlite":
                        path = tmp / f"mirror-{n}.db"
                        mirror, mirror_path = f"sqlite:///{path}", path
                    else:
                        sys.path.insert(0, str(REPO))
                        from tests import pgcluster

                        cluster = cluster or pgcluster.start()
                        import asyncio

                        import asyncpg

                        async def create(dsn: str, name: str) -> None:
                            conn = await asyncpg.connect(dsn)
                            await conn.execute(f'CREATE DATABASE "{name}"')
                            await conn.close()
                        asyncio.run(create(cluster.dsn(), f"mirror{n}"))
                        mirror, mirror_path = cluster.dsn(f"mirror{n}"), None
                    result = one_run(server.base_url, creds, mirror, mirror_path,
                                     args.records, tmp, n)
                    result["mirror"] = args.mirror
                    print(json.dumps(result), flush=True)
                    results.append(result)
            finally:
                server.stop()
                if cluster is not None:
                    cluster.stop()
    out = REPO / "bench" / "results" / f"sync-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"records": args.records, "runs": results,
                               "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()},
                               "note": "server and sync on the same machine"}, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
