"""Running the real `crmwatch sync run` against a real server, and checking the mirror."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from crmwatch.sync.mirror import open_mirror
from tests.conftest import Live


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sync(live: Live, database: str, port: int, *extra: str, module: str = "Leads",
               log: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ZOHO_API_URL": live.base_url, "ZOHO_CLIENT_ID": live.client_id,
           "ZOHO_CLIENT_SECRET": live.client_secret, "ZOHO_REFRESH_TOKEN": live.refresh_token}
    out: Any = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "crmwatch", "sync", "run", "--module", module, "--database",
             database, "--listen", f"127.0.0.1:{port}", "--poll-seconds", "0.2", *extra],
            env=env, stdout=out, stderr=out)
    finally:
        if log is not None:
            out.close()


def stop_sync(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(15)


def source_records(api: httpx.Client, module: str = "Leads") -> dict[str, dict[str, Any]]:
    """Every record of `module`; past a lowered page-token limit by page numbers (the
    server's discrete_page_limit must then be lifted)."""
    out: dict[str, dict[str, Any]] = {}
    token = None
    page = 1
    while True:
        params: dict[str, Any] = {"per_page": 200, "sort_by": "id", "sort_order": "asc"}
        if token:
            params["page_token"] = token
        elif page > 1:
            params["page"] = page
        r = api.get(f"/crm/v8/{module}", params=params)
        if r.status_code == 400 and r.json().get("code") == "PAGINATION_LIMIT_EXCEEDED":
            token = None
            continue
        if r.status_code == 204:
            return out
        body = r.json()
        out.update((d["id"], d) for d in body["data"])
        if not body["info"].get("more_records"):
            return out
        token = body["info"].get("next_page_token") if token or page == 1 else None
        page += 1


def mirror_records(database: str, module: str = "Leads") -> dict[str, dict[str, Any]]:
    async def go() -> dict[str, dict[str, Any]]:
        mirror = await open_mirror(database)
        try:
            if module not in await mirror.mirrored_modules():
                return {}
            return {i: r async for i, r in mirror.iter_records(module, None, None)}
        except Exception:
            return {}
        finally:
            await mirror.close()
    return asyncio.run(go())


def differences(api: httpx.Client, database: str, module: str = "Leads") -> list[str]:
    src = source_records(api, module)
    mir = mirror_records(database, module)
    out = [f"missing {i}" for i in src if i not in mir]
    out += [f"extra {i}" for i in mir if i not in src]
    out += [f"stale {i}: {mir[i]} != {src[i]}" for i in src if i in mir and mir[i] != src[i]]
    return out


def wait_exact(api: httpx.Client, database: str, module: str = "Leads",
               timeout: float = 40.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.time() + timeout
    diff: list[str] = []
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"sync exited with {proc.returncode}")
        diff = differences(api, database, module)
        if not diff:
            return
        time.sleep(0.3)
    raise AssertionError(f"{len(diff)} differences, e.g. {diff[:3]}")


def status(database: str) -> dict[str, Any]:
    from crmwatch.sync.cli import status_doc

    return asyncio.run(status_doc(database))


def restart_server(live: Live, **settings: Any) -> Live:
    """Stop `live` and serve the same database on the same port again."""
    import gc
    import socket as _socket
    import threading
    import warnings

    import uvicorn

    from crmwatch.api.app import create_app
    from crmwatch.config import Settings
    from crmwatch.store import open_store

    live.stop()
    with warnings.catch_warnings():  # the first server's listening socket, left to the GC
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    port = int(live.base_url.rsplit(":", 1)[1])
    deadline = time.time() + 20
    while True:  # until the clients' half-closed keep-alive connections are gone
        sock = _socket.socket()
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            break
        except OSError:
            sock.close()
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    app = create_app(Settings(database_url=live.database_url, port=port, **settings),
                     open_store(live.database_url))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    live.thread, live.server = thread, server
    return live


def _column_equals(value: Any, column: Any) -> bool:
    """Whether a mirror column holds `value` (a records API value) as docs/sync.md says."""
    if value is None:
        return column is None
    if isinstance(value, dict) and "id" in value:
        return bool(column == str(value["id"]))  # lookups, owners, users: the id
    if isinstance(value, (dict, list)):
        return isinstance(column, str) and bool(orjson.loads(column) == value)
    if isinstance(value, bool):
        return column in (0, 1) and bool(column) is value
    return bool(column == value)


def column_differences(database: str, source: dict[str, dict[str, Any]],
                       module: str = "Leads") -> list[str]:
    """Rows whose typed columns differ from the source record (every mirrored field)."""
    async def go() -> list[str]:
        mirror = await open_mirror(database)
        try:
            fields = [f for f in await mirror.mirrored_fields(module) if f != "id"]
            columns = ", ".join(f'"{f}"' for f in fields)
            rows = await mirror.db.read(f'SELECT id, {columns} FROM "{module}"')
        finally:
            await mirror.close()
        out: list[str] = []
        for row in rows:
            record = source.get(row[0])
            if record is None:
                out.append(f"extra {row[0]}")
                continue
            bad = [f for f, column in zip(fields, row[1:], strict=True)
                   if not _column_equals(record.get(f), column)]
            if bad:
                out.append(f"columns {row[0]}: {bad}")
        return out
    return asyncio.run(go())
