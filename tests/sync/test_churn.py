"""Churn while the snapshot runs: creates, updates and deletes, single and in batches of 100,
some records updated twice within one second; afterwards every row equals the source."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Live
from tests.sync.helpers import free_port, start_sync, status, stop_sync, wait_exact
from tests.sync.test_run import create


def churn(live: Live, ids: list[str], seconds: float, seed: int) -> dict[str, int]:
    rnd = random.Random(seed)
    done = {"create": 0, "update": 0, "delete": 0, "twice": 0}
    alive = list(ids)
    deadline = time.time() + seconds
    with live.http() as api:
        n = 0
        while time.time() < deadline:
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
                for k in (1, 2):
                    api.put(f"/crm/v8/Leads/{target}", json={"data": [{"City": f"T{n}.{k}"}]})
                done["twice"] += 1
            else:
                batch = rnd.sample(alive, min(len(alive) - 1, rnd.choice([1, 1, 100])))
                if batch:
                    api.delete("/crm/v8/Leads", params={"ids": ",".join(batch)})
                    gone = set(batch)
                    alive = [i for i in alive if i not in gone]
                    done["delete"] += len(batch)
    return done


class TestChurnDuringSnapshot:
    """Changes racing the export never leave the mirror wrong (crmwatch and --plain-zoho)."""

    @pytest.mark.slow
    @pytest.mark.parametrize("plain", [False, True], ids=["crmwatch", "plain-zoho"])
    def test_churn(self, server: Live, server_api: httpx.Client, mirror_url: str,
                   tmp_path: Path, plain: bool) -> None:
        ids = create(server_api, 5000)
        result: dict[str, dict[str, int]] = {}
        worker = threading.Thread(target=lambda: result.update(
            done=churn(server, ids, 6.0, 7)))
        proc = start_sync(server, mirror_url, free_port(), "--margin-seconds", "5",
                          *(["--plain-zoho"] if plain else []), log=tmp_path / "sync.log")
        worker.start()
        try:
            worker.join(60)
            assert result["done"]["twice"] > 0 and result["done"]["delete"] > 0
            wait_exact(server_api, mirror_url, proc=proc, timeout=60)
            assert status(mirror_url)["modules"][0]["snapshot"]["exports"] == 1
        finally:
            assert stop_sync(proc) == 0, (tmp_path / "sync.log").read_text()[-3000:]
