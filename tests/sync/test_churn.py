"""Churn while the snapshot runs: 20,000 records, creates, updates and deletes, single and in
batches of 100, some records updated twice within one second; once the churn stops,
`sync verify` passes and every field of every row (the columns and `_record`) equals the
records API. Both paths (crmwatch, --plain-zoho), both mirror databases."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Live
from tests.sync import helpers
from tests.sync.helpers import free_port, start_sync, status, stop_sync, wait_exact
from tests.sync.test_run import create
from tests.sync.test_verify import run_verify

RECORDS = 20_000


def churn(live: Live, ids: list[str], stop: threading.Event, seed: int) -> dict[str, int]:
    """Random changes until `stop`; counts by kind (`same_second`: records whose two
    updates got one Modified_Time)."""
    rnd = random.Random(seed)
    done = {"create": 0, "update": 0, "delete": 0, "twice": 0, "same_second": 0}
    alive = list(ids)
    with live.http() as api:
        n = 0
        while not stop.is_set():
            n += 1
            op = rnd.random()
            if op < 0.15:
                size = rnd.choice([1, 100])
                alive += create(api, size, f"C{n}_")
                done["create"] += size
            elif op < 0.55:
                batch = rnd.sample(alive, min(len(alive), rnd.choice([1, 100])))
                r = api.put("/crm/v8/Leads", json={"data": [
                    {"id": i, "Company": f"U{n}", "No_of_Employees": n} for i in batch]})
                assert r.status_code in (200, 202), r.text
                done["update"] += len(batch)
            elif op < 0.75:
                target = rnd.choice(alive)  # twice within one second: same Modified_Time
                times = []
                for k in (1, 2):
                    r = api.put(f"/crm/v8/Leads/{target}", json={"data": [{"City": f"T{n}.{k}"}]})
                    assert r.status_code == 200, r.text
                    times.append(r.json()["data"][0]["details"]["Modified_Time"])
                done["twice"] += 1
                done["same_second"] += times[0] == times[1]
            else:
                batch = rnd.sample(alive, min(len(alive) - 1, rnd.choice([1, 1, 100])))
                if batch:
                    r = api.delete("/crm/v8/Leads", params={"ids": ",".join(batch)})
                    assert r.status_code == 200, r.text
                    gone = set(batch)
                    alive = [i for i in alive if i not in gone]
                    done["delete"] += len(batch)
    return done


def snapshot_done(database: str) -> bool:
    try:
        return bool(status(database)["modules"][0]["snapshot"]["done"])
    except Exception:
        return False


class TestChurnDuringSnapshot:
    """Changes racing the export never leave the mirror wrong (crmwatch and --plain-zoho)."""

    @pytest.mark.slow
    @pytest.mark.timeout(300)
    @pytest.mark.parametrize("plain", [False, True], ids=["crmwatch", "plain-zoho"])
    def test_churn(self, server: Live, server_api: httpx.Client, mirror_url: str,
                   tmp_path: Path, plain: bool) -> None:
        t0 = time.monotonic()
        ids = create(server_api, RECORDS)
        seeded = time.monotonic()
        result: dict[str, dict[str, int]] = {}
        stop = threading.Event()
        worker = threading.Thread(target=lambda: result.update(
            done=churn(server, ids, stop, 7)))
        mode = ["--plain-zoho"] if plain else []
        proc = start_sync(server, mirror_url, free_port(), "--margin-seconds", "5", *mode,
                          log=tmp_path / "sync.log")
        worker.start()
        try:
            # the churn runs for the whole export (and at least 6 s), then stops
            deadline = time.monotonic() + 240
            while not snapshot_done(mirror_url) and time.monotonic() < deadline:
                assert proc.poll() is None, (tmp_path / "sync.log").read_text()[-3000:]
                time.sleep(0.5)
            exported = time.monotonic()
            assert snapshot_done(mirror_url)
            time.sleep(max(0.0, 6.0 - (exported - seeded)))
            stop.set()
            worker.join(60)
            done = result["done"]
            assert done["update"] and done["create"] and done["delete"] > 0
            assert done["same_second"] > 0
            wait_exact(server_api, mirror_url, proc=proc, timeout=180)
            assert helpers.column_differences(
                mirror_url, helpers.source_records(server_api)) == []
            code, out, err = run_verify(server, mirror_url, *mode)
            assert code == 0, (out, err)
            assert status(mirror_url)["modules"][0]["snapshot"]["exports"] == 1
            print(f"seed {seeded - t0:.1f} s, export under churn {exported - seeded:.1f} s, "
                  f"exact {time.monotonic() - exported:.1f} s after; {done}")
        finally:
            stop.set()
            assert stop_sync(proc) == 0, (tmp_path / "sync.log").read_text()[-3000:]
