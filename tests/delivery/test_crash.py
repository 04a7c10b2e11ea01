"""Nothing lost: kill -9 during a write load, several processes on one database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.receiver import Receiver
from tests.store.test_journal import _db_rows
from tests.test_cli import free_port, run, wait_up

FAST_ENV = {"CRMWATCH_RETRY_INITIAL_SECONDS": "0.2", "CRMWATCH_RETRY_MAX_DELAY_SECONDS": "0.5",
            "CRMWATCH_RETRY_WINDOW_SECONDS": "120", "CRMWATCH_DELIVERY_LEASE_SECONDS": "2",
            "CRMWATCH_LOG_LEVEL": "error", "CRMWATCH_DISPATCH_POLL_SECONDS": "0.02"}


class Proc:
    def __init__(self, args: list[str], db: str, port: int | None = None) -> None:
        env = {**os.environ, **FAST_ENV, "CRMWATCH_DATABASE_URL": db}
        if port is not None:
            env["CRMWATCH_PORT"] = str(port)
        self.port = port
        self.p = subprocess.Popen([sys.executable, "-m", "crmwatch", *args], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(20)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def token_for(url: str, creds: dict[str, str]) -> str:
    return httpx.post(url + "/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": creds["client_id"],
        "client_secret": creds["client_secret"],
        "refresh_token": creds["refresh_token"]}).json()["access_token"]  # type: ignore[no-any-return]


class Load:
    """Creates and updates Leads against whichever servers are up, until stopped."""

    def __init__(self, token: str, urls: list[str]) -> None:
        self.token, self.urls = token, urls
        self.stop = threading.Event()
        self.ids: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        h = {"Authorization": f"Zoho-oauthtoken {self.token}"}
        while not self.stop.is_set():
            i += 1
            url = self.urls[i % len(self.urls)]
            try:
                if self.ids and i % 2:
                    rid = self.ids[i % len(self.ids)]
                    httpx.put(f"{url}/crm/v8/Leads/{rid}", headers=h, timeout=5,
                              json={"data": [{"Company": f"c{i}"}]})
                else:
                    r = httpx.post(f"{url}/crm/v8/Leads", headers=h, timeout=5,
                                   json={"data": [{"Last_Name": f"L{i}"}]})
                    if r.status_code == 201:
                        self.ids.append(r.json()["data"][0]["details"]["id"])
            except httpx.HTTPError:
                time.sleep(0.05)


def check_ledger(db: str, receiver: Receiver, channels: list[str]) -> None:
    """Every committed Leads change reached every channel; per record, in commit order."""
    _live, events = _db_rows(db)
    expected = [(rid, op) for _seq, rid, op in events if op in ("insert", "update")]
    assert expected, "the load wrote nothing"
    firsts: dict[str, Any] = {}
    for r in receiver.received:
        firsts.setdefault(r.headers["X-Crmwatch-Notification-Id"], r)
    for cid in channels:
        got = [r for r in firsts.values() if r.json["channel_id"] == cid]
        got.sort(key=lambda r: int(r.headers["X-Crmwatch-Channel-Seq"]))
        seen: dict[str, list[str]] = defaultdict(list)
        arrival: dict[str, list[float]] = defaultdict(list)
        for r in got:
            for rid in r.json["ids"]:
                seen[rid].append(r.json["operation"])
                arrival[rid].append(r.at)
        for rid, op in expected:
            assert op in seen[str(rid)], f"channel {cid}: {op} of {rid} never delivered"
        want: dict[str, list[str]] = defaultdict(list)
        for rid, op in expected:
            want[str(rid)].append(op)
        for rid, ops in want.items():
            assert seen[rid] == ops, f"channel {cid}, record {rid}: {seen[rid]} != {ops}"
            assert arrival[rid] == sorted(arrival[rid]), f"record {rid} out of order"


def wait_drained(url: str, token: str, timeout: float = 60) -> None:
    h = {"Authorization": f"Zoho-oauthtoken {token}"}
    deadline = time.time() + timeout
    while time.time() < deadline:
        busy = [s for s in ("pending", "retrying") if httpx.get(
            url + "/crmwatch/v1/deliveries", headers=h, params={"status": s}).status_code == 200]
        behind = httpx.get(url + "/crmwatch/v1/changes", headers=h,
                           params={"limit": 1}).json()["info"]
        if not busy and behind:
            time.sleep(1.0)
            busy = [s for s in ("pending", "retrying") if httpx.get(
                url + "/crmwatch/v1/deliveries", headers=h,
                params={"status": s}).status_code == 200]
            if not busy:
                return
        time.sleep(0.2)
    raise AssertionError("deliveries did not drain")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(delay=0.002).start()
    yield r
    r.stop()


def setup_org(db: str) -> dict[str, str]:
    run("org", "create", "acme", db=db)
    return json.loads(run("client", "create", "--json", db=db).stdout)  # type: ignore[no-any-return]


def watch(url: str, token: str, receiver: Receiver, channels: list[str]) -> None:
    for cid in channels:
        r = httpx.post(url + "/crm/v8/actions/watch",
                       headers={"Authorization": f"Zoho-oauthtoken {token}"},
                       json={"watch": [{"channel_id": cid, "notify_url": receiver.url + "/n",
                                        "events": ["Leads.create", "Leads.edit"],
                                        "channel_expiry": None}]})
        assert r.status_code == 200, r.text


@pytest.mark.slow
class TestKillDuringLoad:
    """kill -9 the server three times under load: all committed changes arrive, in order."""

    def test_kill_restart(self, database_url: str, receiver: Receiver, tmp_path: Path) -> None:
        creds = setup_org(database_url)
        port = free_port()
        server = Proc(["serve"], database_url, port)
        channels = ["11", "12", "13"]
        try:
            wait_up(server.url, server.p)  # type: ignore[arg-type]
            token = token_for(server.url, creds)
            watch(server.url, token, receiver, channels)
            load = Load(token, [server.url])
            load.thread.start()
            for _ in range(3):
                time.sleep(1.2)
                server.kill()
                server = Proc(["serve"], database_url, port)
                wait_up(server.url, server.p)  # type: ignore[arg-type]
            time.sleep(0.5)
            load.stop.set()
            load.thread.join(10)
            wait_drained(server.url, token)
        finally:
            server.stop()
        check_ledger(database_url, receiver, channels)


@pytest.mark.slow
@pytest.mark.postgres
class TestScaleOut:
    """Two API processes and two workers on one PostgreSQL database lose nothing."""

    def test_two_apis_two_workers(self, pg_cluster: Any, receiver: Receiver) -> None:
        from tests.conftest import new_pg_database

        db = new_pg_database(pg_cluster)
        creds = setup_org(db)
        apis = [Proc(["serve", "--no-workers"], db, free_port()) for _ in range(2)]
        workers = [Proc(["worker"], db) for _ in range(2)]
        channels = ["21", "22"]
        try:
            for a in apis:
                wait_up(a.url, a.p)  # type: ignore[arg-type]
            token = token_for(apis[0].url, creds)
            watch(apis[0].url, token, receiver, channels)
            load = Load(token, [a.url for a in apis])
            load.thread.start()
            time.sleep(2.5)
            workers[0].kill()  # its channels must be taken over after the lease lapses
            time.sleep(1.0)
            load.stop.set()
            load.thread.join(10)
            wait_drained(apis[0].url, token)
        finally:
            for p in apis + workers:
                p.stop()
        check_ledger(db, receiver, channels)
        ids = [r.headers["X-Crmwatch-Notification-Id"] for r in receiver.received]
        assert len(ids) - len(set(ids)) <= 2 * 64, "duplicates beyond in-flight retries"
