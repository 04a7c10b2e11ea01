"""The Zoho catch-up (`--plain-zoho`) past the server's page-token limit: the sync is down
while more records change than one listing pages through, and is exact after its restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST_DELIVERY, Live, start_server
from tests.sync.helpers import free_port, start_sync, status, stop_sync, wait_exact
from tests.sync.test_run import create

LIMIT = 400
"""The server's page-token limit here (Zoho's is 100,000): two pages of 200."""


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Live]:
    # webhooks that fail are given up within a second: what the sync misses while it is
    # down only the catch-up can bring
    live = start_server(f"sqlite:///{tmp_path / 'crm.db'}", page_token_record_limit=LIMIT,
                        discrete_page_limit=0,
                        **{**FAST_DELIVERY, "retry_window_seconds": 1.0})
    try:
        yield live
    finally:
        live.stop()


def log_tail(tmp_path: Path) -> str:
    path = tmp_path / "sync.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


class TestZohoCatchUpPastTheTokenLimit:
    """More changed records than a listing may page through are caught up in windows by
    Modified_Time, the records of a window's first second read again."""

    def test_down_while_many_records_change(self, limited: Live, mirror_url: str,
                                            tmp_path: Path) -> None:
        with limited.http() as api:
            ids = create(api, 1000)
            time.sleep(2.5)  # the first catch-up's window (margin 1 s) starts after these
            port = free_port()
            proc = start_sync(limited, mirror_url, port, "--plain-zoho", "--margin-seconds",
                              "1", log=tmp_path / "sync.log")
            try:
                wait_exact(api, mirror_url, proc=proc, timeout=60)
            finally:
                assert stop_sync(proc) == 0, log_tail(tmp_path)
            received = status(mirror_url)["notifications"]["received"]

            # down: 300 updates back to back (one second may hold more than a page), then
            # batches of 100 a little apart, deletes and creates; far more than LIMIT
            for k in range(3):
                r = api.put("/crm/v8/Leads", json={"data": [
                    {"id": i, "Company": f"A{k}"} for i in ids[k * 100:(k + 1) * 100]]})
                assert r.status_code == 200, r.text
            time.sleep(1.1)  # no second holds LIMIT records: else the test has no answer
            for k in range(3, 9):
                time.sleep(0.6)
                r = api.put("/crm/v8/Leads", json={"data": [
                    {"id": i, "City": f"B{k}", "No_of_Employees": k}
                    for i in ids[k * 100:(k + 1) * 100]]})
                assert r.status_code == 200, r.text
            api.put(f"/crm/v8/Leads/{ids[0]}", json={"data": [{"City": "twice 1"}]})
            api.put(f"/crm/v8/Leads/{ids[0]}", json={"data": [{"City": "twice 2"}]})
            api.delete("/crm/v8/Leads", params={"ids": ",".join(ids[900:950])})
            api.delete(f"/crm/v8/Leads/{ids[960]}")
            create(api, 150, "Down")
            time.sleep(3)  # every delivery of the changes above has failed for good
            proc = start_sync(limited, mirror_url, free_port(), "--plain-zoho",
                              "--margin-seconds", "1", log=tmp_path / "sync.log")
            try:
                wait_exact(api, mirror_url, proc=proc, timeout=60)
                doc = status(mirror_url)
                assert doc["notifications"]["received"] == received
                assert doc["modules"][0]["snapshot"]["exports"] == 1
                assert not doc.get("last_error"), doc
            finally:
                assert stop_sync(proc) == 0, log_tail(tmp_path)
