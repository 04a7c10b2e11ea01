"""Fixtures: a real database of each backend, a real server on a loopback port, clients."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from crmwatch.api.app import create_app
from crmwatch.catalog import standard_modules
from crmwatch.config import Settings
from crmwatch.store import open_store, tenants
from tests import pgcluster

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_db_names = itertools.count()


# -- PostgreSQL -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pgcluster.Cluster]:
    try:
        cluster = pgcluster.start()
    except RuntimeError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI: {exc}")
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    try:
        asyncio.run(_make_template(cluster))
        yield cluster
    finally:
        cluster.stop()


async def _make_template(cluster: pgcluster.Cluster) -> None:
    import asyncpg

    conn = await asyncpg.connect(cluster.dsn())
    await conn.execute("CREATE DATABASE crm_template")
    await conn.close()
    store = open_store(cluster.dsn("crm_template"))
    await store.migrate()
    await store.close()


def new_pg_database(cluster: pgcluster.Cluster) -> str:
    import asyncpg

    name = f"t{os.getpid()}_{next(_db_names)}"

    async def create() -> None:
        conn = await asyncpg.connect(cluster.dsn())
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE crm_template')
        await conn.close()

    asyncio.run(create())
    return cluster.dsn(name)


# -- databases --------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crm.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    return new_pg_database(cluster)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'crm.db'}"


def run_flow(url: str, flow: Any, write: bool = True) -> Any:
    async def main() -> Any:
        store = open_store(url)
        if hasattr(store, "run_sequencer"):
            store.run_sequencer = False
        await store.migrate()
        await store.start()
        try:
            return await (store.write(flow) if write else store.read(flow))
        finally:
            await store.close()
    return asyncio.run(main())


def now_ms() -> int:
    return int(time.time() * 1000)


# -- a live server ----------------------------------------------------------------------------

@dataclass
class Live:
    base_url: str
    database_url: str
    client_id: str
    client_secret: str
    refresh_token: str
    org_id: int
    thread: threading.Thread
    server: uvicorn.Server
    _token: str | None = None

    def token(self) -> str:
        if self._token is None:
            r = httpx.post(self.base_url + "/oauth/v2/token", data={
                "grant_type": "refresh_token", "client_id": self.client_id,
                "client_secret": self.client_secret, "refresh_token": self.refresh_token})
            self._token = r.json()["access_token"]
        return self._token

    def http(self, auth: bool = True) -> httpx.Client:
        headers = {"Authorization": f"Zoho-oauthtoken {self.token()}"} if auth else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def new_client(self, scopes: str, org: str | None = None) -> tenants.Credentials:
        from crmwatch.domain import scopes as sc

        def flow() -> Any:
            found = yield from tenants.find_org(org or "acme")
            return (yield from tenants.create_client(
                found, sc.render(sc.parse_scopes(scopes)), "test", now_ms()))
        return run_flow(self.database_url, flow())  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(database_url: str, org: str | None = "acme",
                 timezone: str = "America/Los_Angeles", **settings: Any) -> Live:
    """A server in a thread on a free loopback port; with `org`, a new org and client first."""
    from crmwatch.domain import scopes as sc

    def setup() -> Any:
        assert org is not None
        created = yield from tenants.create_org(org, timezone, standard_modules(), now_ms())
        creds = yield from tenants.create_client(
            created, sc.render(sc.parse_scopes(",".join(sc.DEFAULT_SCOPES))), "test", now_ms())
        return creds

    creds = run_flow(database_url, setup()) if org else None
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    cfg = Settings(database_url=database_url, port=port, **settings)
    app = create_app(cfg, open_store(database_url))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    if creds is None:
        return Live(cfg.public_base_url, database_url, "", "", "", 0, thread, server)
    return Live(cfg.public_base_url, database_url, creds.client_id, creds.client_secret,
                creds.refresh_token, creds.org.id, thread, server)


@pytest.fixture
def live(database_url: str) -> Iterator[Live]:
    server = start_server(database_url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(live: Live) -> Iterator[httpx.Client]:
    with live.http() as client:
        yield client


FAST_DELIVERY = {"retry_initial_seconds": 0.2, "retry_max_delay_seconds": 0.5,
                 "retry_window_seconds": 30.0, "dispatch_poll_seconds": 0.02}
"""Settings for delivery tests: retries within a second, the dispatcher polling often."""


@pytest.fixture
def fast_live(database_url: str) -> Iterator[Live]:
    """A live server with FAST_DELIVERY settings (tests override `live` with it)."""
    server = start_server(database_url, **FAST_DELIVERY)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def receiver() -> Iterator[Any]:
    """A real webhook receiver on a loopback port (tests/receiver.py)."""
    from tests.receiver import Receiver

    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()
