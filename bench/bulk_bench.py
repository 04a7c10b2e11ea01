"""Bulk Read benchmark: a page of 200,000 Leads exported to the zip, on SQLite and/or PostgreSQL.

    python bench/bulk_bench.py [--backend sqlite|postgres|both] [--records 200000]
                               [--pages 1] [--runs 3] [--src REV]
    python bench/bulk_bench.py --records 1000000 --pages 5 --runs 1
    python bench/bulk_bench.py --report bench/results/bulk-<date>.json

For each backend it:

1. seeds N Leads of about 20 populated fields through crmwatch's own write flows
   (`store.records.write_records`, as `crmwatch seed` does, in batches of 2,000 per
   transaction; on PostgreSQL the statements whose results the flow ignores are sent in
   executemany groups), then starts `crmwatch serve` once on the result and waits until it is
   idle (the dispatcher folds the journal). The seeded database is cached, keyed by N, the
   seed and a hash of the schema: a SQLite file, or a template database in a private
   PostgreSQL cluster that stays in the cache dir (stock durability). Re-runs copy it;
2. starts `crmwatch serve` on the copy, makes a self client and a token, runs a warm-up job
   (the page after the last one: empty), then for each run exports pages 1..P through HTTP:
   time from `POST /crm/bulk/v8/read` to COMPLETED (status polled every 50 ms), download time
   and size, the export child's peak RSS growth (sampled at 20 Hz and read from VmHWM, after
   resetting it through /proc/PID/clear_refs), CPU of every process involved, the machine
   load, and a check of the file: one `<job id>.csv`, header `Id` first, row count, ids
   ascending and equal to the ids seeded for that page (every id exactly once over the pages);
3. times `crmwatch.bulk.csvzip.export(spec)` called directly (in a fresh process of its own,
   no server, no polling) for the page-1 job of each run;
4. measures API latency (`--api`): `GET /crm/v8/Leads/{id}` and `GET /crm/v8/Leads?per_page=200`
   at fixed rates from a separate open-loop client process, first with the server idle, then
   while page-1 exports run back to back (`--api-busy` s); latency counts from each request's
   scheduled time;
5. prints the tables and writes everything to bench/results/bulk-<date>.json.

`--src REV` runs everything (seeding, server, export child) on `git archive REV` of src/ put
first on PYTHONPATH, instead of the editable install's working tree.

The script re-invokes itself with `--direct` (step 3) and `--apigen` (step 4).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import fcntl
import hashlib
import io
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import records_bench as rb

REPO = rb.REPO
RESULTS = rb.RESULTS
HOST = rb.HOST
PER_PAGE = 200_000
BATCH = 2000
POOL = 2000
SEED_VERSION = 1
"""Bump when the generated records change: it is part of the cache key."""

# The issue's figures.
TARGET_S = {"sqlite": 5.0, "postgres": 2.0}
TARGET_MEM_MB = 100.0
TARGET_API_RATIO = 2.0

# Bare ceilings on this machine (/work/shared/reference/limits.md §4, 200k rows x 20 text
# columns, each export in a process of its own): seconds at zip level 6 and level 1.
CEILINGS: dict[str, tuple[float, float, str]] = {
    "sqlite": (3.39, 2.84, "SQLite fetchmany -> csv.writer -> zip"),
    "postgres": (1.50, 0.55, "asyncpg copy_from_query(csv) -> zip"),
}
CEILING_RSS_MB = 60.0


def _log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def _now_ms() -> int:
    return int(time.time() * 1000)


# =============================================================================================
# Processes: RSS, children, CPU
# =============================================================================================


def _status_kb(pid: int, key: str) -> int | None:
    """A `VmRSS`-style field of /proc/PID/status, in kB; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak(pid: int) -> bool:
    """Reset VmHWM of a process to its current RSS (Linux >= 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return rb._children(pid)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def export_children(server_pid: int) -> list[int]:
    """The server's worker processes that may run an export (not multiprocessing's tracker)."""
    return [c for c in _children(server_pid) if "resource_tracker" not in _cmdline(c)]


def _tree_ticks(pid: int | None) -> int:
    if not pid:
        return 0
    return rb._proc_cpu_ticks(pid) + sum(rb._proc_cpu_ticks(c) for c in _children(pid))


@dataclass
class CpuMark:
    wall: float
    server: int
    children: int
    db: int
    bench: float
    box_busy: int
    box_total: int


class CpuMeter:
    """CPU used between two marks by the server, its children, PostgreSQL, this script, and
    everything else on the machine ("other": the other engineers' jobs)."""

    def __init__(self, server_pid: int, postmaster: int | None) -> None:
        self.server_pid, self.postmaster = server_pid, postmaster

    def mark(self) -> CpuMark:
        kids = sum(rb._proc_cpu_ticks(c) for c in _children(self.server_pid))
        busy, total = rb._box_ticks()
        return CpuMark(
            time.monotonic(),
            rb._proc_cpu_ticks(self.server_pid),
            kids,
            _tree_ticks(self.postmaster),
            time.process_time(),
            busy,
            total,
        )

    @staticmethod
    def usage(a: CpuMark, b: CpuMark, extra_s: float = 0.0) -> dict[str, float]:
        """% of one core (box: % of all cores); `extra_s`: CPU s of our own other processes."""
        hz = os.sysconf("SC_CLK_TCK")
        wall = max(1e-9, b.wall - a.wall)

        def pct(ticks: int) -> float:
            return round(100 * ticks / hz / wall, 1)

        box = 100 * (b.box_busy - a.box_busy) / max(1, b.box_total - a.box_total)
        out = {
            "server_pct": pct(b.server - a.server),
            "export_child_pct": pct(b.children - a.children),
            "db_pct": pct(b.db - a.db),
            "bench_pct": round(100 * (b.bench - a.bench + extra_s) / wall, 1),
            "box_pct": round(box, 1),
        }
        ours = sum(v for k, v in out.items() if k != "box_pct")
        out["other_pct"] = round(max(0.0, box * (os.cpu_count() or 1) - ours), 1)
        return out


class RssSampler(threading.Thread):
    """Peak RSS of the server and of its export children, sampled every `interval` s."""

    def __init__(self, server_pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.server_pid, self.interval = server_pid, interval
        self.stop_event = threading.Event()
        self.server_peak_kb = 0
        self.child_peak_kb: dict[int, int] = {}
        self.child_first_kb: dict[int, int] = {}
        self.samples = 0

    def run(self) -> None:
        kids: list[int] = []
        next_scan = 0.0
        while not self.stop_event.is_set():
            now = time.monotonic()
            if now >= next_scan:  # re-list the children at 4 Hz, sample them at 20 Hz
                kids = export_children(self.server_pid)
                next_scan = now + 0.25
            rss = _status_kb(self.server_pid, "VmRSS") or 0
            self.server_peak_kb = max(self.server_peak_kb, rss)
            for c in kids:
                kb = _status_kb(c, "VmRSS")
                if kb is None:
                    continue
                self.child_first_kb.setdefault(c, kb)
                self.child_peak_kb[c] = max(self.child_peak_kb.get(c, 0), kb)
            self.samples += 1
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


# =============================================================================================
# Seeding (in this process, through crmwatch's store)
# =============================================================================================


def lead_inputs(module: Any, count: int, seed: int) -> Iterator[dict[str, Any]]:
    """`count` Leads as `crmwatch seed` makes them, fast: `crmwatch.seed.records` makes a pool
    of POOL records (Faker costs ~1 ms a record); each Lead takes every field from a random
    pool record, so fields keep seed.py's values and its ~80% fill rate."""
    from crmwatch import seed as seeding

    pool = list(seeding.records(module, POOL, seed))
    names = sorted({k for r in pool for k in r})
    rng = random.Random(seed)
    pick = rng.randrange
    for _ in range(count):
        out = {}
        for name in names:
            value = pool[pick(POOL)].get(name)
            if value is not None:
                out[name] = value
        yield out


async def _pg_write_grouped(store: Any, flow: Any) -> Any:
    """Run a write flow in one transaction as PostgresStore.write does, except that the
    statements whose result the flow ignores (mode "none" queries, journal events) are sent
    at commit, grouped by statement in executemany calls (pipelined: one round trip per group
    instead of one per statement). Only for inserts of new rows with no reads of them in the
    flow, as seeding does: the rows, ids and events are the flow's own."""
    from crmwatch.store.base import Emit, NextIds, Query, Savepoint

    pool = await store._ensure_pool()
    groups: dict[str, list[tuple[Any, ...]]] = {}

    async def flush(conn: Any) -> None:
        for sql, rows in groups.items():
            await conn.executemany(sql, rows)
        groups.clear()

    async with pool.acquire() as conn, conn.transaction():
        try:
            op = next(flow)
            while True:
                if isinstance(op, Query) and op.mode == "none":
                    groups.setdefault(store._sql[op.name], []).append(tuple(op.args))
                    result = None
                elif isinstance(op, Emit):
                    groups.setdefault(store._sql["emit"], []).append(
                        (
                            op.org_id,
                            op.module,
                            op.record_id,
                            op.operation,
                            op.changed,
                            op.values,
                            op.related,
                            op.batch,
                            op.time_ms,
                            op.user_id,
                        )
                    )
                    result = None
                elif isinstance(op, Savepoint):  # seeded records are never refused
                    result = None
                else:
                    if not isinstance(op, NextIds):  # ids come from a sequence: no flush
                        await flush(conn)
                    result = await store._execute(conn, op)
                op = flow.send(result)
        except StopIteration as stop:
            await flush(conn)
            return stop.value


async def _seed(url: str, backend: str, count: int, seed: int, label: str) -> dict[str, Any]:
    from crmwatch.catalog import standard_modules
    from crmwatch.domain import records as rec
    from crmwatch.store import open_store, tenants
    from crmwatch.store import records as store_records

    store = open_store(url)
    if hasattr(store, "run_sequencer"):
        store.run_sequencer = False  # numbered once at the end (sync_journal)
    await store.migrate()
    await store.start()
    try:
        await store.write(tenants.create_org("default", "UTC", standard_modules(), _now_ms()))
        org = await store.read(tenants.find_org(None))
        modules, _ = await store.read(tenants.load_catalog(org.id))
        by_name = {m.api_name: m for m in modules}
        module = by_name["Leads"]
        users = await store.read(tenants.list_users(org.id))
        by_id = {u.id: u for u in users}

        if backend == "postgres":

            async def write(flow: Any) -> Any:
                return await _pg_write_grouped(store, flow)
        else:
            write = store.write

        ids = array("q")
        fields = 0

        def collect(results: list[dict[str, Any]]) -> None:
            for r in results:
                if r.get("status") != "success":
                    raise RuntimeError(f"seeding failed: {r}")
                ids.append(int(r["details"]["id"]))

        gen = lead_inputs(module, count, seed)
        t0 = last = time.monotonic()
        done = 0
        pending: asyncio.Future[Any] | None = None
        while done < count:
            raw = list(itertools.islice(gen, min(BATCH, count - done)))
            fields += sum(len(r) for r in raw)
            items = [
                rec.parse_input(module, r, i, creating=True, modules=by_name)
                for i, r in enumerate(raw)
            ]
            ctx = store_records.Ctx(
                org, users[0], by_id, by_name, _now_ms(), store_records.new_batch()
            )
            if pending is not None:  # one batch in flight while the next one is built
                collect(await pending)
            pending = asyncio.ensure_future(
                write(store_records.write_records(ctx, module, "insert", items))
            )
            done += len(items)
            now = time.monotonic()
            if now - last >= 2 or done == count:
                rate = done / (now - t0)
                _log(
                    f"{label} seeding {done:,}/{count:,} Leads ({rate:,.0f}/s, "
                    f"eta {(count - done) / rate:.0f} s)"
                )
                last = now
        if pending is not None:
            collect(await pending)
        write_s = time.monotonic() - t0
        if backend == "postgres":
            _log(f"{label} numbering the journal")
            await store.sync_journal()
        seconds = time.monotonic() - t0
    finally:
        await store.close()
    ids = array("q", sorted(ids))
    if len(set(ids)) != count:
        raise RuntimeError("seeding produced duplicate ids")
    return {
        "ids": ids,
        "org_id": org.id,
        "seconds": round(seconds, 1),
        "write_seconds": round(write_s, 1),
        "records_per_s": round(count / write_s),
        "input_fields_per_record": round(fields / count, 1),
    }


def schema_key(backend: str, count: int, seed: int) -> str:
    """Cache key: N, seed, and a hash of the migrations, of the Leads fields and SEED_VERSION."""
    from crmwatch.catalog import standard_modules
    from crmwatch.store import migrations as mig_pkg

    h = hashlib.sha1(f"v{SEED_VERSION} {POOL} {BATCH}".encode())
    mig_dir = Path(mig_pkg.__file__).parent / backend
    for p in sorted(mig_dir.glob("*.sql")):
        h.update(p.name.encode() + p.read_bytes())
    leads = next(m for m in standard_modules() if m.api_name == "Leads")
    h.update(repr(leads.fields).encode())
    return f"n{count}_s{seed}_{h.hexdigest()[:10]}"


# =============================================================================================
# Databases: the cache, SQLite copies, the cached PostgreSQL cluster
# =============================================================================================


@dataclass
class Database:
    url: str
    postmaster: int | None
    description: str
    ids: array[int]
    org_id: int
    seed_info: dict[str, Any]


def _save_meta(base: Path, ids: array[int], info: dict[str, Any]) -> None:
    with open(f"{base}.ids.part", "wb") as f:
        ids.tofile(f)
    os.replace(f"{base}.ids.part", f"{base}.ids")
    Path(f"{base}.json").write_text(json.dumps(info, indent=1))


def _load_meta(base: Path, count: int) -> tuple[array[int], dict[str, Any]] | None:
    try:
        info = json.loads(Path(f"{base}.json").read_text())
        ids = array("q")
        with open(f"{base}.ids", "rb") as f:
            ids.fromfile(f, count)
    except (OSError, EOFError, ValueError):
        return None
    return ids, info


def dispatcher_behind(url: str, org_id: int) -> bool | None:
    """Whether the org's journal has events the dispatcher has not folded yet (None: unknown)."""
    try:
        from crmwatch.store import dispatch, open_store
    except ImportError:
        return None

    async def run() -> bool:
        store = open_store(url)
        if hasattr(store, "run_sequencer"):
            store.run_sequencer = False
        try:
            return bool(await store.read(dispatch.behind(org_id)))
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except Exception:
        return None


def prime(url: str, org_id: int, tmp: Path, label: str) -> float:
    """Start the server once on a freshly seeded database and let its dispatcher fold the
    seeded journal (one write per 2,000 events), which must not happen during a measurement."""
    server = rb.Server(url, rb.free_port(), tmp / "prime.log")
    t0 = time.monotonic()
    _log(f"{label} priming: first server start on the seeded database")
    try:
        server.start(timeout=600)
        while time.monotonic() - t0 < 1800 and dispatcher_behind(url, org_id):
            time.sleep(1)
        _, pct = wait_server_idle(server.pid, 120)
        _log(
            f"{label} priming: journal folded, server at {pct:.0f}% CPU after "
            f"{time.monotonic() - t0:.0f} s"
        )
    finally:
        server.stop()
    return round(time.monotonic() - t0, 1)


def wait_server_idle(pid: int, limit: float, threshold_pct: float = 20.0) -> tuple[float, float]:
    """Wait until a process used < threshold % of a core over two consecutive 1 s windows;
    (s waited, % of a core in the last window). An idle server is not at 0: it polls."""
    hz = os.sysconf("SC_CLK_TCK")
    t0 = time.monotonic()
    quiet = 0
    used = -1.0
    while time.monotonic() - t0 < limit:
        a, w = rb._proc_cpu_ticks(pid), time.monotonic()
        time.sleep(1.0)
        used = 100 * (rb._proc_cpu_ticks(pid) - a) / hz / (time.monotonic() - w)
        quiet = quiet + 1 if used < threshold_pct else 0
        if quiet >= 2:
            break
    return time.monotonic() - t0, used


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One bench at a time per cache entry (the PostgreSQL cluster in particular)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def sqlite_database(args: argparse.Namespace, tmp: Path) -> Iterator[Database]:
    import sqlite3

    key = schema_key("sqlite", args.records, args.seed)
    cache = args.cache_dir / "sqlite"
    base = cache / key
    label = "[sqlite]"
    with _locked(cache / "lock"):
        meta = None if args.reseed else _load_meta(base, args.records)
        if meta is None or not Path(f"{base}.db").exists():
            cache.mkdir(parents=True, exist_ok=True)
            part = cache / f"{key}.part.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{part}{suffix}").unlink(missing_ok=True)
            url = f"sqlite:///{part}"
            info = asyncio.run(_seed(url, "sqlite", args.records, args.seed, label))
            ids = info.pop("ids")
            info["prime_seconds"] = prime(url, info["org_id"], tmp, label)
            conn = sqlite3.connect(part)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
            info["bytes"] = part.stat().st_size
            info["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            info["src"] = src_version()
            os.replace(part, f"{base}.db")
            _save_meta(base, ids, info)
            info["cached"] = False
        else:
            ids, info = meta
            info["cached"] = True
            _log(f"{label} using the cached database {base}.db")
        db_path = tmp / "bench.db"
        t0 = time.monotonic()
        shutil.copyfile(f"{base}.db", db_path)
        info["copy_seconds"] = round(time.monotonic() - t0, 1)
    yield Database(
        f"sqlite:///{db_path}",
        None,
        f"SQLite {sqlite3.sqlite_version}, WAL, synchronous=NORMAL",
        ids,
        int(info["org_id"]),
        info,
    )


class PgCache:
    """A PostgreSQL cluster kept in the cache dir, stock durability: `seed_<key>` databases are
    the templates; each bench run works on a FILE_COPY of one, dropped at the end."""

    def __init__(self, root: Path) -> None:
        sys.path.insert(0, str(REPO))
        from tests import pgcluster

        self.root = root
        self.data = root / "data"
        initdb, pg_ctl = pgcluster.find_bin("initdb"), pgcluster.find_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.user = "postgres" if os.geteuid() == 0 else None
        self.port = 0

    def _cmd(self, args: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *args] if self.user else args

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://crmwatch@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True)
            if self.user:
                import pwd

                pw = pwd.getpwnam(self.user)
                os.chown(self.root, pw.pw_uid, pw.pw_gid)
            run = subprocess.run(
                self._cmd(
                    [
                        self.initdb,
                        "-D",
                        str(self.data),
                        "-U",
                        "crmwatch",
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--no-sync",
                    ]
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if run.returncode:
                raise RuntimeError(f"initdb failed: {run.stderr.strip()[-500:]}")
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(
                    f"\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.root}'\nmax_connections = 300\n"
                )
        # a cluster left running by an interrupted run of this script
        subprocess.run(
            self._cmd([self.pg_ctl, "-D", str(self.data), "-m", "fast", "stop"]),
            capture_output=True,
            check=False,
        )
        self.port = rb.free_port()
        run = subprocess.run(
            self._cmd(
                [
                    self.pg_ctl,
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.root / "log"),
                    "-o",
                    f"-p {self.port}",
                    "-w",
                    "-t",
                    "120",
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode:
            raise RuntimeError(f"pg_ctl start failed: {run.stderr.strip()}")

    def stop(self) -> None:
        subprocess.run(
            self._cmd([self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            check=False,
        )

    @property
    def postmaster(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def version(self) -> str:
        return subprocess.run(
            [self.pg_ctl, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()

    def sql(self, *statements: str, database: str = "postgres") -> list[Any]:
        import asyncpg

        async def run() -> list[Any]:
            conn = await asyncpg.connect(self.dsn(database))
            try:
                return [await conn.fetch(s) for s in statements]
            finally:
                await conn.close()

        return asyncio.run(run())

    def databases(self) -> set[str]:
        (rows,) = self.sql("SELECT datname FROM pg_database")
        return {r[0] for r in rows}


@contextlib.contextmanager
def postgres_database(args: argparse.Namespace, tmp: Path) -> Iterator[Database]:
    key = schema_key("postgres", args.records, args.seed)
    meta_base = args.cache_dir / "postgres" / key
    label = "[postgres]"
    with _locked(args.cache_dir / "postgres" / "lock"):
        pg = PgCache(args.cache_dir / "postgres" / "cluster")
        pg.start()
        run_db = f"bench_{os.getpid()}"
        try:
            template = f"seed_{key}"
            existing = pg.databases()
            for name in existing:  # left behind by interrupted runs
                if name.startswith(("bench_", "seed_partial_")) or (
                    args.reseed and name == template
                ):
                    pg.sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            meta = None if args.reseed else _load_meta(meta_base, args.records)
            if meta is None or template not in pg.databases():
                partial = f"seed_partial_{os.getpid()}"
                pg.sql(f'CREATE DATABASE "{partial}"')
                url = pg.dsn(partial)
                info = asyncio.run(_seed(url, "postgres", args.records, args.seed, label))
                ids = info.pop("ids")
                info["prime_seconds"] = prime(url, info["org_id"], tmp, label)
                _log(f"{label} VACUUM ANALYZE, CHECKPOINT")
                pg.sql("VACUUM ANALYZE", database=partial)
                pg.sql("CHECKPOINT", f'ALTER DATABASE "{partial}" RENAME TO "{template}"')
                (rows,) = pg.sql(f"SELECT pg_database_size('{template}')")
                info["bytes"] = int(rows[0][0])
                info["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                info["src"] = src_version()
                meta_base.parent.mkdir(parents=True, exist_ok=True)
                _save_meta(meta_base, ids, info)
                info["cached"] = False
            else:
                ids, info = meta
                info["cached"] = True
                _log(f"{label} using the cached template database {template}")
            t0 = time.monotonic()
            pg.sql(f'CREATE DATABASE "{run_db}" TEMPLATE "{template}" STRATEGY = FILE_COPY')
            info["copy_seconds"] = round(time.monotonic() - t0, 1)
            yield Database(
                pg.dsn(run_db),
                pg.postmaster,
                f"{pg.version()}, cached private cluster, stock durability",
                ids,
                int(info["org_id"]),
                info,
            )
        finally:
            with contextlib.suppress(Exception):
                if run_db in pg.databases():
                    pg.sql(f'DROP DATABASE "{run_db}" WITH (FORCE)')
            pg.stop()


# =============================================================================================
# HTTP: jobs, polling, downloads
# =============================================================================================


@dataclass
class Api:
    base: str
    token: str

    def request(
        self, method: str, path: str, body: Any = None, timeout: float = 30
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Zoho-oauthtoken {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, raw = rb._http(
            method, self.base + path, data=data, headers=headers, timeout=timeout
        )
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw[:300].decode(errors="replace")

    def download(self, path: str, dest: Path) -> dict[str, Any]:
        """GET a result into `dest`; retries a 429 (Zoho: 10 downloads a minute)."""
        waited = 0.0
        while True:
            req = urllib.request.Request(
                self.base + path, headers={"Authorization": f"Zoho-oauthtoken {self.token}"}
            )
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(req, timeout=120) as resp, open(dest, "wb") as out:
                    shutil.copyfileobj(resp, out, 1 << 20)
                    headers = resp.headers
                    status = resp.status
            except urllib.error.HTTPError as exc:
                if exc.code == 429 and waited < 180:
                    pause = float(exc.headers.get("Retry-After") or 61)
                    _log(f"download answered 429: waiting {pause:g} s")
                    time.sleep(pause)
                    waited += pause
                    continue
                raise RuntimeError(f"download failed: {exc.code} {exc.read()[:300]!r}") from exc
            return {
                "status": status,
                "seconds": round(time.monotonic() - t0, 3),
                "bytes": dest.stat().st_size,
                "content_type": headers.get("Content-Type"),
                "content_disposition": headers.get("Content-Disposition"),
                "waited_429_s": waited,
            }


def job_query(page: int | None, token: str | None) -> dict[str, Any]:
    if token is not None:
        return {"query": {"page_token": token}}
    return {"query": {"module": {"api_name": "Leads"}, "page": page}}


def run_job(
    api: Api, body: dict[str, Any], meter: CpuMeter, server_pid: int, timeout: float
) -> dict[str, Any]:
    """POST a job and poll it every 50 ms until it ends; times, CPU, RSS and load."""
    before_kids = export_children(server_pid)
    baseline = {c: _status_kb(c, "VmRSS") for c in before_kids}
    reset = {c: _reset_peak(c) for c in before_kids}
    server_rss0 = _status_kb(server_pid, "VmRSS") or 0
    load_before = _loadavg()
    sampler = RssSampler(server_pid)
    sampler.start()
    cpu0 = meter.mark()
    t_post = time.monotonic()
    status, created = api.request("POST", "/crm/bulk/v8/read", body)
    t_created = time.monotonic()
    if status != 201:
        sampler.stop()
        return {"error": f"create answered {status}: {created}", "body": body}
    job_id = created["data"][0]["details"]["id"]
    states: dict[str, float] = {created["data"][0]["details"]["state"]: 0.0}
    polls = 0
    job: dict[str, Any] = {}
    while True:
        time.sleep(0.05)
        status, payload = api.request("GET", f"/crm/bulk/v8/read/{job_id}")
        polls += 1
        now = time.monotonic()
        if status != 200:
            raise RuntimeError(f"job status answered {status}: {payload}")
        job = payload["data"][0]
        states.setdefault(job["state"], round(now - t_post, 3))
        if job["state"] in ("COMPLETED", "FAILURE") or now - t_post > timeout:
            break
    t_done = now
    cpu1 = meter.mark()
    sampler.stop()
    load_after = _loadavg()
    children: dict[str, Any] = {}
    for c in set(sampler.child_peak_kb) | set(before_kids):
        hwm = _status_kb(c, "VmHWM") if reset.get(c) else None
        peak = max(sampler.child_peak_kb.get(c, 0), hwm or 0)
        base = baseline.get(c) or sampler.child_first_kb.get(c)
        children[str(c)] = {
            "new_process": c not in before_kids,
            "baseline_mb": round((base or 0) / 1024, 1),
            "peak_mb": round(peak / 1024, 1),
            "growth_mb": round((peak - (base or 0)) / 1024, 1),
            "vmhwm_read": hwm is not None,
            "cmdline": _cmdline(c)[:120],
        }
    export_child = max(children.values(), key=lambda c: c["growth_mb"], default=None)
    result = job.get("result") or {}
    return {
        "job_id": job_id,
        "body": body,
        "state": job.get("state"),
        "seconds": round(t_done - t_post, 3),
        "create_seconds": round(t_created - t_post, 3),
        "states_seen_at_s": states,
        "polls": polls,
        "t_post_mono": t_post,
        "t_done_mono": t_done,
        "result": result,
        "count": result.get("count"),
        "more_records": result.get("more_records"),
        "next_page_token": result.get("next_page_token"),
        "export_child": export_child,
        "children": children,
        "rss_samples": sampler.samples,
        "server_rss_mb": round(server_rss0 / 1024, 1),
        "server_rss_growth_mb": round((sampler.server_peak_kb - server_rss0) / 1024, 1),
        "cpu": CpuMeter.usage(cpu0, cpu1),
        "export_cpu_s": round((cpu1.children - cpu0.children) / os.sysconf("SC_CLK_TCK"), 2),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


def verify_zip(
    path: Path, job_id: str, expected: Sequence[int]
) -> tuple[dict[str, Any], array[int]]:
    """Check a downloaded result; returns the checks and the ids in file order."""
    ids = array("q")
    bad_width = 0
    empty_name = 0
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        csv_bytes = zf.getinfo(names[0]).file_size
        with zf.open(names[0]) as raw:
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
            header = next(reader)
            width = len(header)
            last = header.index("Last_Name") if "Last_Name" in header else None
            for row in reader:
                ids.append(int(row[0]))
                if len(row) != width:
                    bad_width += 1
                elif last is not None and not row[last]:
                    empty_name += 1
    ascending = all(a < b for a, b in itertools.pairwise(ids))
    checks = {
        "entries": names,
        "entry_name_ok": names == [f"{job_id}.csv"],
        "header_first": header[0],
        "columns": width,
        "rows": len(ids),
        "rows_expected": len(expected),
        "csv_mb": round(csv_bytes / 1e6, 1),
        "zip_of_csv": round(path.stat().st_size / max(1, csv_bytes), 3),
        "ids_ascending": ascending,
        "ids_equal_seeded": ids == array("q", expected),
        "rows_with_wrong_width": bad_width,
        "rows_without_last_name": empty_name,
    }
    checks["ok"] = bool(
        checks["entry_name_ok"]
        and header[0] == "Id"
        and ascending
        and checks["ids_equal_seeded"]
        and not bad_width
        and not empty_name
    )
    return checks, ids


# =============================================================================================
# The direct export (its own process) and the API load generator (its own process)
# =============================================================================================


def direct_main() -> None:
    cfg = json.loads(sys.stdin.read())
    from crmwatch.bulk import csvzip
    from crmwatch.store import bulk as store_bulk
    from crmwatch.store import open_store

    async def load() -> Any:
        store = open_store(cfg["url"])
        if hasattr(store, "run_sequencer"):
            store.run_sequencer = False
        try:
            return await store.read(store_bulk.get_job(cfg["org_id"], int(cfg["job_id"])))
        finally:
            await store.close()

    job = asyncio.run(load())
    spec = csvzip.job_spec(cfg["url"], job)
    rss0 = _status_kb(os.getpid(), "VmRSS") or 0
    _reset_peak(os.getpid())
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    res = csvzip.export(spec, cfg["out_dir"])
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    hwm = _status_kb(os.getpid(), "VmHWM") or 0
    path = Path(res.path)
    out = {
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 2),
        "count": res.count,
        "more_records": res.more_records,
        "bytes": path.stat().st_size,
        "rss_before_mb": round(rss0 / 1024, 1),
        "peak_mb": round(hwm / 1024, 1),
        "growth_mb": round((hwm - rss0) / 1024, 1),
    }
    path.unlink()
    sys.stdout.write(json.dumps(out))


def direct_export(url: str, org_id: int, job_id: str, tmp: Path) -> dict[str, Any]:
    out_dir = tmp / "direct"
    out_dir.mkdir(exist_ok=True)
    load_before = _loadavg()
    busy0 = rb._box_ticks()
    run = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--direct"],
        input=json.dumps({"url": url, "org_id": org_id, "job_id": job_id, "out_dir": str(out_dir)}),
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    busy1 = rb._box_ticks()
    if run.returncode:
        return {"error": run.stderr.strip()[-1500:], "job_id": job_id}
    out = dict(json.loads(run.stdout))
    out["job_id"] = job_id
    out["loadavg_before"], out["loadavg_after"] = load_before, _loadavg()
    out["box_pct"] = round(100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 1)
    return out


async def _apigen(cfg: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    rate: float = cfg["rate"]
    urls = [cfg["base"] + p for p in cfg["paths"]]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def wait_eof() -> None:  # the orchestrator closes our stdin to stop us
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_eof, daemon=True).start()
    rows: list[tuple[float, float, float, int | str]] = []
    connector = aiohttp.TCPConnector(limit=cfg["connections"])
    headers = {"Authorization": f"Zoho-oauthtoken {cfg['token']}"}
    cpu0 = time.process_time()
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def one(t_sched: float, url: str) -> None:
            t_send = time.monotonic()
            status: int | str
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    status = resp.status
            except Exception as exc:  # counted as an error
                status = type(exc).__name__
            rows.append((t_sched, t_send, time.monotonic(), status))

        start = time.monotonic() + 0.1
        print(json.dumps({"ready": start}), flush=True)
        tasks: set[asyncio.Task[None]] = set()
        k = 0
        deadline = start + cfg["max_seconds"]
        while not stop.is_set():
            t_k = start + k / rate
            if t_k > deadline:
                break
            delay = t_k - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
            task = asyncio.create_task(one(t_k, urls[k % len(urls)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1
        if tasks:
            await asyncio.wait(tasks, timeout=35)
    return {"rows": rows, "cpu_s": round(time.process_time() - cpu0, 2)}


def apigen_main() -> None:
    cfg = json.loads(sys.stdin.readline())
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    result = asyncio.run(_apigen(cfg))
    print(json.dumps(result), flush=True)


def _lat_stats(rows: list[Any], windows: list[tuple[float, float]]) -> dict[str, Any]:
    """Latency (ms, from the scheduled time) of the requests scheduled in the [lo, hi) windows."""
    sel = [r for r in rows if any(lo <= r[0] < hi for lo, hi in windows)]
    ok = sorted(1000 * (r[2] - r[0]) for r in sel if isinstance(r[3], int) and r[3] < 300)
    service = sorted(1000 * (r[2] - r[1]) for r in sel if isinstance(r[3], int) and r[3] < 300)
    errors: dict[str, int] = {}
    for r in sel:
        if not (isinstance(r[3], int) and r[3] < 300):
            errors[str(r[3])] = errors.get(str(r[3]), 0) + 1
    return {
        "window_s": round(sum(hi - lo for lo, hi in windows), 2),
        "requests": len(sel),
        "ok": len(ok),
        "errors": errors,
        "p50_ms": round(rb._percentile(ok, 50), 2) if ok else None,
        "p90_ms": round(rb._percentile(ok, 90), 2) if ok else None,
        "p99_ms": round(rb._percentile(ok, 99), 2) if ok else None,
        "max_ms": round(ok[-1], 2) if ok else None,
        "service_p99_ms": round(rb._percentile(service, 99), 2) if service else None,
    }


def api_latency(
    api: Api,
    db: Database,
    meter: CpuMeter,
    server_pid: int,
    args: argparse.Namespace,
    kind: str,
    rate: float,
) -> dict[str, Any]:
    """p50/p99 of one API request at a fixed rate: idle, then while a page-1 export runs.

    kind "list": `GET /crm/v8/Leads?per_page=200`; "get": one record, 1,000 seeded ids in turn.
    """
    if kind == "list":
        paths = ["/crm/v8/Leads?per_page=200"]
        what = paths[0]
    else:
        rng = random.Random(len(db.ids))
        paths = [f"/crm/v8/Leads/{db.ids[rng.randrange(len(db.ids))]}" for _ in range(1000)]
        what = "/crm/v8/Leads/{id}"
    cfg = {
        "base": api.base,
        "token": api.token,
        "paths": paths,
        "rate": rate,
        "connections": 64,
        "max_seconds": args.api_idle + 10 * args.job_timeout,
    }
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--apigen"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(cfg) + "\n")
        proc.stdin.flush()
        ready = float(json.loads(proc.stdout.readline())["ready"])
        warm = 1.0
        mark0 = meter.mark()
        time.sleep(max(0.0, ready + warm + args.api_idle - time.monotonic()))
        mark1 = meter.mark()
        # page-1 exports back to back until they add up to --api-busy s (at most 10 jobs), so
        # that the p99 "during" rests on enough requests when an export is short
        jobs: list[dict[str, Any]] = []
        while True:
            job = run_job(api, job_query(1, None), meter, server_pid, args.job_timeout)
            jobs.append(job)
            busy_s = sum(j.get("seconds", 0) for j in jobs)
            if busy_s >= args.api_busy or len(jobs) >= 10 or job.get("state") != "COMPLETED":
                break
        time.sleep(0.3)
        proc.stdin.close()
        out = json.loads(proc.stdout.read())
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rows = out["rows"]
    windows = [(j["t_post_mono"], j["t_done_mono"]) for j in jobs if "t_post_mono" in j]
    idle = _lat_stats(rows, [(ready + warm, jobs[0].get("t_post_mono", ready + warm))])
    busy = _lat_stats(rows, windows)
    ratio = None
    if idle["p99_ms"] and busy["p99_ms"]:
        ratio = round(busy["p99_ms"] / idle["p99_ms"], 2)
    for j in jobs:
        j.pop("t_post_mono", None)
        j.pop("t_done_mono", None)
    return {
        "request": f"GET {what}",
        "rate": rate,
        "idle": idle,
        "during_export": busy,
        "p99_ratio": ratio,
        "meets_target": None
        if ratio is None
        else ratio <= TARGET_API_RATIO and not busy["errors"] and not idle["errors"],
        "idle_cpu": CpuMeter.usage(mark0, mark1),
        "export_jobs": jobs,
        "loadgen_cpu_s": out["cpu_s"],
    }


# =============================================================================================
# One backend
# =============================================================================================


def export_pages(
    api: Api,
    db: Database,
    meter: CpuMeter,
    server_pid: int,
    tmp: Path,
    args: argparse.Namespace,
    label: str,
) -> dict[str, Any]:
    """Pages 1..P of the whole module, following next_page_token when the server gives one."""
    pages: list[dict[str, Any]] = []
    all_ids = array("q")
    token: str | None = None
    for page in range(1, args.pages + 1):
        waited, busy = rb.wait_quiet(args.quiet_wait) if args.quiet_wait > 0 else (0.0, -1.0)
        body = job_query(page, token)
        job = run_job(api, body, meter, server_pid, args.job_timeout)
        if "error" in job and token is not None:  # page tokens refused: use page numbers
            _log(f"{label} page_token refused ({job['error'][:120]}); using page {page}")
            job = run_job(api, job_query(page, None), meter, server_pid, args.job_timeout)
            job["page_token_refused"] = True
        job.pop("t_post_mono", None)
        job.pop("t_done_mono", None)
        job["page"] = page
        job["quiet_wait_s"], job["busy_before_pct"] = waited, busy
        if job.get("state") != "COMPLETED":
            pages.append(job)
            _log(f"{label} page {page}: {job.get('state') or job.get('error')}")
            break
        dest = tmp / f"{job['job_id']}.zip"
        job["download"] = api.download(job["result"]["download_url"], dest)
        lo = (page - 1) * PER_PAGE
        checks, ids = verify_zip(dest, job["job_id"], db.ids[lo : lo + PER_PAGE])
        more_expected = len(db.ids) > page * PER_PAGE
        checks["more_records_ok"] = job["more_records"] is more_expected
        checks["count_ok"] = job["count"] == len(ids)
        checks["ok"] = checks["ok"] and checks["more_records_ok"] and checks["count_ok"]
        job["verify"] = checks
        all_ids.extend(ids)
        dest.unlink()
        pages.append(job)
        child = job["export_child"] or {}
        _log(
            f"{label} page {page}: {job['seconds']:.2f} s to COMPLETED "
            f"({job['count']:,} rows, more={job['more_records']}), download "
            f"{job['download']['seconds']:.2f} s {job['download']['bytes'] / 1e6:.1f} MB, "
            f"child +{child.get('growth_mb')} MB, cpu% other {job['cpu']['other_pct']}, "
            f"load {job['loadavg_before'][0]:.2f}->{job['loadavg_after'][0]:.2f}, "
            f"verify {'ok' if checks['ok'] else 'FAILED ' + json.dumps(checks)}"
        )
        token = job.get("next_page_token")
        if not job["more_records"]:
            break
    union = {
        "rows": len(all_ids),
        "seeded": len(db.ids),
        "every_id_once": all_ids == db.ids,
    }
    return {
        "pages": pages,
        "union": union,
        "total_seconds": round(sum(p.get("seconds", 0) for p in pages), 3),
    }


def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    label = f"[{backend}]"
    tmp = Path(tempfile.mkdtemp(prefix=f"crmwatch-bulk-bench-{backend}-"))
    server: rb.Server | None = None
    job_ids: list[str] = []
    database = sqlite_database if backend == "sqlite" else postgres_database
    try:
        with database(args, tmp) as db:
            server = rb.Server(db.url, rb.free_port(), tmp / "server.log")
            _log(f"{label} starting the server on port {server.port} ({db.description})")
            # results in our temp dir (the setting exists since the export rewrite; before
            # it, PostgreSQL results go to a shared temp dir: see _remove_results)
            with _environ(CRMWATCH_BULK_RESULTS_DIR=str(tmp / "results")):
                server.start(timeout=300)
            creds = rb.credentials(db.url)
            api = Api(server.base_url, rb.access_token(server.base_url, creds))
            settle, idle_pct = wait_server_idle(server.pid, 120)
            meter = CpuMeter(server.pid, db.postmaster)
            warm_page = min(50, -(-len(db.ids) // PER_PAGE) + 1)  # the first empty page
            warm = run_job(api, job_query(warm_page, None), meter, server.pid, args.job_timeout)
            job_ids.append(str(warm.get("job_id")))
            _log(
                f"{label} warm-up job (page {warm_page}): {warm.get('state')} "
                f"count {warm.get('count')} in {warm.get('seconds')} s"
            )
            runs: list[dict[str, Any]] = []
            direct: list[dict[str, Any]] = []
            for run in range(1, args.runs + 1):
                res = export_pages(api, db, meter, server.pid, tmp, args, f"{label} run {run}")
                res["run"] = run
                runs.append(res)
                job_ids += [str(p.get("job_id")) for p in res["pages"]]
                first = res["pages"][0]
                if args.direct and first.get("state") == "COMPLETED":
                    d = direct_export(db.url, db.org_id, first["job_id"], tmp)
                    direct.append(d)
                    _log(
                        f"{label} run {run} direct csvzip.export: "
                        f"{d.get('seconds')} s, +{d.get('growth_mb')} MB"
                        f"{' ERROR ' + d['error'][-300:] if 'error' in d else ''}"
                    )
            latency = []
            for kind, rate in args.api:
                lat = api_latency(api, db, meter, server.pid, args, kind, rate)
                latency.append(lat)
                job_ids += [str(j.get("job_id")) for j in lat["export_jobs"]]
                _log(
                    f"{label} API {lat['request']} at {rate:g}/s: p99 idle "
                    f"{lat['idle']['p99_ms']} ms, during export "
                    f"{lat['during_export']['p99_ms']} ms (x{lat['p99_ratio']}), "
                    f"exports {[j.get('seconds') for j in lat['export_jobs']]} s"
                )
            return {
                "backend": backend,
                "database": db.description,
                "records": len(db.ids),
                "seed": db.seed_info,
                "server_settle_s": round(settle, 1),
                "server_idle_cpu_pct": round(idle_pct, 1),
                "warmup_job": warm,
                "runs": runs,
                "direct": direct,
                "api_latency": latency,
            }
    finally:
        if server is not None:
            stragglers = _children(server.pid) if server.proc else []
            server.stop()
            for pid in stragglers:  # export children the server left behind
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if backend == "postgres":
            _remove_results(job_ids)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _remove_results(job_ids: list[str]) -> None:
    """PostgreSQL exports land in a shared temp dir: remove ours."""
    with contextlib.suppress(Exception):
        from crmwatch.bulk import csvzip

        out = Path(csvzip.results_dir("postgresql://"))
        for job_id in job_ids:
            for p in out.glob(f"{job_id}.zip*"):
                p.unlink(missing_ok=True)


# =============================================================================================
# Report
# =============================================================================================


def _med(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    backend = result["backend"]
    target = TARGET_S[backend]
    l6, l1, ceiling_what = CEILINGS[backend]
    first = [r["pages"][0] for r in result["runs"] if r["pages"]]
    done = [p for p in first if p.get("state") == "COMPLETED"]
    secs = [p["seconds"] for p in done]
    growth = [p["export_child"]["growth_mb"] for p in done if p.get("export_child")]
    direct = [d["seconds"] for d in result["direct"] if "seconds" in d]
    med = _med(secs)
    med_direct = _med(direct)
    all_pages = [p for r in result["runs"] for p in r["pages"]]
    verified = all(p.get("verify", {}).get("ok") for p in all_pages) and all(
        r["union"]["every_id_once"] for r in result["runs"]
    )
    out: dict[str, Any] = {
        "backend": backend,
        "records": result["records"],
        "runs": len(result["runs"]),
        "page1_seconds_median": med,
        "page1_seconds_min": min(secs) if secs else None,
        "page1_seconds_max": max(secs) if secs else None,
        "target_s": target,
        "meets_time": None if med is None else med <= target,
        "of_ceiling_l6": round(l6 / med, 3) if med else None,
        "of_ceiling_l1": round(l1 / med, 3) if med else None,
        "ceiling": f"{ceiling_what}: {l6} s (zip level 6), {l1} s (level 1)",
        "direct_seconds_median": med_direct,
        "direct_of_ceiling_l6": round(l6 / med_direct, 3) if med_direct else None,
        "download_seconds_median": _med([p["download"]["seconds"] for p in done]),
        "zip_mb": round(done[0]["download"]["bytes"] / 1e6, 1) if done else None,
        "child_growth_mb_max": max(growth) if growth else None,
        "child_peak_mb_max": max(
            (p["export_child"]["peak_mb"] for p in done if p.get("export_child")), default=None
        ),
        "csv_mb": done[0]["verify"].get("csv_mb") if done else None,
        "direct_growth_mb_max": max(
            (d["growth_mb"] for d in result["direct"] if "growth_mb" in d), default=None
        ),
        "meets_memory": None if not growth else max(growth) <= TARGET_MEM_MB,
        "server_rss_growth_mb_max": max((p["server_rss_growth_mb"] for p in done), default=None),
        "export_cpu_s_median": _med([p["export_cpu_s"] for p in done]),
        "other_cpu_pct_median": _med([p["cpu"]["other_pct"] for p in done]),
        "loadavg_1m": [p["loadavg_before"][0] for p in done]
        + ([done[-1]["loadavg_after"][0]] if done else []),
        "verified": verified,
        "pages": None,
    }
    if result["runs"] and len(result["runs"][0]["pages"]) > 1:
        out["pages"] = [
            {
                "run": r["run"],
                "seconds": [p.get("seconds") for p in r["pages"]],
                "total_s": r["total_seconds"],
                "every_id_once": r["union"]["every_id_once"],
                "rows": r["union"]["rows"],
            }
            for r in result["runs"]
        ]
    for lat in result.get("api_latency") or []:
        lat.setdefault("export_jobs", [lat.get("export_job", {})])  # results before 16:15 UTC
    out["api"] = [
        {
            "request": lat["request"],
            "rate": lat["rate"],
            "idle_p50_ms": lat["idle"]["p50_ms"],
            "idle_p99_ms": lat["idle"]["p99_ms"],
            "busy_p50_ms": lat["during_export"]["p50_ms"],
            "busy_p99_ms": lat["during_export"]["p99_ms"],
            "busy_requests": lat["during_export"]["requests"],
            "errors": {**lat["idle"]["errors"], **lat["during_export"]["errors"]},
            "ratio": lat["p99_ratio"],
            "meets_target": lat["meets_target"],
            "export_seconds": _med([j["seconds"] for j in lat["export_jobs"] if "seconds" in j]),
            "exports": len(lat["export_jobs"]),
            "idle_server_cpu_pct": lat["idle_cpu"]["server_pct"],
            "idle_other_cpu_pct": lat["idle_cpu"]["other_pct"],
            "busy_other_cpu_pct": _med(
                [j["cpu"]["other_pct"] for j in lat["export_jobs"] if "cpu" in j]
            ),
        }
        for lat in result.get("api_latency") or []
    ]
    return out


def _table(head: Sequence[str], rows: list[Sequence[str]]) -> None:
    lines = [list(head), *[list(r) for r in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for n, line in enumerate(lines):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _f(value: Any, fmt: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, fmt)


def _yes(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[value]


def print_tables(summaries: list[dict[str, Any]]) -> None:
    rows = []
    for s in summaries:
        rows.append(
            (
                s["backend"],
                f"{s['records']:,}",
                f"{_f(s['page1_seconds_median'])} [{_f(s['page1_seconds_min'])}-"
                f"{_f(s['page1_seconds_max'])}]",
                f"<= {s['target_s']:g}",
                _yes(s["meets_time"]),
                f"{_f(s['of_ceiling_l6'], '.0%')} / {_f(s['of_ceiling_l1'], '.0%')}",
                _f(s["direct_seconds_median"]),
                f"{_f(s['download_seconds_median'])} / {_f(s['zip_mb'], '.1f')}",
                f"{_f(s['child_growth_mb_max'], '.0f')} / {_f(s.get('child_peak_mb_max'), '.0f')}"
                f" ({_f(s['direct_growth_mb_max'], '.0f')})",
                _yes(s["meets_memory"]),
                _f(s["export_cpu_s_median"]),
                _f(s["other_cpu_pct_median"], ".0f"),
                " ".join(f"{x:.1f}" for x in s["loadavg_1m"]),
                "ok" if s["verified"] else "FAILED",
            )
        )
    _table(
        (
            "backend",
            "records",
            "page 1 s med [min-max]",
            "target",
            "met?",
            "of ceiling L6/L1",
            "direct s",
            "download s / MB",
            "child +MB / peak MB (direct +MB)",
            "<=100MB?",
            "export CPU s",
            "other CPU%",
            "load 1m",
            "verify",
        ),
        rows,
    )
    for s in summaries:
        if s["pages"]:
            print()
            _table(
                ("backend", "run", "per-page s (1..P)", "total s", "rows", "every id once"),
                [
                    (
                        s["backend"],
                        str(p["run"]),
                        " ".join(_f(x) for x in p["seconds"]),
                        _f(p["total_s"]),
                        f"{p['rows']:,}",
                        _yes(p["every_id_once"]),
                    )
                    for p in s["pages"]
                ],
            )
    apis = [s for s in summaries if s["api"]]
    if apis:
        print()
        _table(
            (
                "backend",
                "request",
                "rate/s",
                "idle p50/p99 ms",
                "during export p50/p99 ms",
                "n during",
                "p99 ratio",
                "<= 2x?",
                "errors",
                "export s (n)",
                "server CPU% idle",
                "other CPU% idle/export",
            ),
            [
                (
                    s["backend"],
                    a["request"],
                    f"{a['rate']:g}",
                    f"{_f(a['idle_p50_ms'], '.1f')} / {_f(a['idle_p99_ms'], '.1f')}",
                    f"{_f(a['busy_p50_ms'], '.1f')} / {_f(a['busy_p99_ms'], '.1f')}",
                    str(a["busy_requests"]),
                    _f(a["ratio"]),
                    _yes(a["meets_target"]),
                    json.dumps(a["errors"]) if a["errors"] else "0",
                    f"{_f(a['export_seconds'])} ({a['exports']})",
                    _f(a["idle_server_cpu_pct"], ".0f"),
                    f"{_f(a['idle_other_cpu_pct'], '.0f')}/{_f(a['busy_other_cpu_pct'], '.0f')}",
                )
                for s in apis
                for a in s["api"]
            ],
        )


# =============================================================================================
# Source selection, CLI
# =============================================================================================


def src_version() -> str:
    """The crmwatch code under test: `<commit> (--src)`, or HEAD, `+dirty` when src/ has local
    changes (the editable install runs whatever src/ holds when a process starts)."""
    pinned = os.environ.get("BULK_BENCH_SRC")
    if pinned:
        return f"{pinned} (git archive, --src)"

    def git(*a: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *a], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return git("rev-parse", "--short", "HEAD") + (
            "+dirty" if git("status", "--porcelain", "--", "src") else ""
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def use_source(rev: str, argv: list[str]) -> None:
    """Re-run this script with `git archive <rev>` of src/ first on PYTHONPATH."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = Path(tempfile.gettempdir()) / f"crmwatch-src-{sha[:12]}"
    if not (dest / "src" / "crmwatch").is_dir():
        part = Path(tempfile.mkdtemp(prefix="crmwatch-src-"))
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", sha, "src"], capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(part, filter="data")
        with contextlib.suppress(OSError):
            part.rename(dest)
    env = dict(
        os.environ,
        BULK_BENCH_SRC=sha[:10],
        PYTHONPATH=os.pathsep.join(filter(None, [str(dest / "src"), os.environ.get("PYTHONPATH")])),
    )
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument(
        "--records", type=int, default=PER_PAGE, help="Leads seeded (default %(default)s)"
    )
    p.add_argument(
        "--pages",
        type=int,
        default=1,
        help="pages of 200,000 exported per run (5 for 1,000,000 records)",
    )
    p.add_argument("--runs", type=int, default=3, help="times the pages are exported")
    p.add_argument("--seed", type=int, default=1, help="random seed of the generated Leads")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("/var/tmp/crmwatch-bulk-bench"),
        help="seeded databases (SQLite files, a PostgreSQL cluster)",
    )
    p.add_argument("--reseed", action="store_true", help="ignore the cached seeded database")
    p.add_argument(
        "--no-direct",
        dest="direct",
        action="store_false",
        help="skip the direct csvzip.export timing",
    )
    p.add_argument(
        "--api",
        action="append",
        default=None,
        metavar="KIND:RATE",
        help="API latency check, repeatable: list:R = GET /crm/v8/Leads?per_page=200 at R/s, "
        "get:R = GET of one record at R/s; default get:200 and list:20; `none` to skip",
    )
    p.add_argument("--api-idle", type=float, default=5.0, help="idle latency window, s")
    p.add_argument(
        "--api-busy",
        type=float,
        default=8.0,
        help="latency window during exports, s: page-1 exports run back to back until their "
        "times add up to this (at most 10)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="before each page, wait up to this many s for the machine to go idle",
    )
    p.add_argument("--job-timeout", type=float, default=600.0, help="s per job")
    p.add_argument(
        "--src",
        default=None,
        metavar="REV",
        help="run on `git archive REV` of src/ instead of the working tree",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON output file")
    p.add_argument(
        "--report", type=Path, default=None, help="only print the tables of a results JSON file"
    )
    args = p.parse_args(argv)
    specs = args.api or ["get:200", "list:20"]
    args.api = []
    for spec in specs:
        if spec == "none":
            continue
        kind, _, rate = spec.partition(":")
        if kind not in ("list", "get") or not rate.replace(".", "", 1).isdigit():
            p.error(f"--api {spec!r}: expected list:RATE or get:RATE")
        args.api.append((kind, float(rate)))
    if args.pages > 1 and args.records < args.pages * PER_PAGE:
        p.error("--pages P needs --records >= P x 200,000")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    if argv[:1] == ["--direct"]:
        direct_main()
        return 0
    if argv[:1] == ["--apigen"]:
        apigen_main()
        return 0
    args = parse_args(argv)
    if args.report:
        saved = json.loads(args.report.read_text())
        print(f"{saved['command']}  ({saved['started']}, src {saved.get('src')})")
        print_tables([summarize(r) for r in saved["results"]])
        return 0
    if args.src and not os.environ.get("BULK_BENCH_SRC"):
        use_source(args.src, argv)
    import crmwatch

    _log(f"crmwatch from {Path(crmwatch.__file__).parent} ({src_version()})")
    signal.signal(signal.SIGTERM, _interrupt)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start = _loadavg()
    results = [bench_backend(b, args) for b in backends]
    summaries = [summarize(r) for r in results]
    print()
    print(
        f"crmwatch Bulk Read benchmark, {started}, src {src_version()}, "
        f"{args.records:,} Leads, {args.pages} page(s) x {args.runs} run(s); "
        f"load {load_start} -> {_loadavg()}"
    )
    print_tables(summaries)
    out = args.out or RESULTS / f"bulk-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = rb.machine()
    machine["loadavg_start"], machine["loadavg_end"] = load_start, _loadavg()
    out.write_text(
        json.dumps(
            {
                "command": "python bench/bulk_bench.py " + " ".join(argv),
                "started": started,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "src": src_version(),
                "machine": machine,
                "settings": {
                    k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                },
                "targets": {
                    "page_seconds": TARGET_S,
                    "child_rss_growth_mb": TARGET_MEM_MB,
                    "api_p99_ratio": TARGET_API_RATIO,
                },
                "ceilings": {
                    "seconds": CEILINGS,
                    "rss_mb": CEILING_RSS_MB,
                    "source": "/work/shared/reference/limits.md section 4",
                },
                "summary": summaries,
                "results": results,
            },
            indent=1,
        )
    )
    print(f"\nraw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
