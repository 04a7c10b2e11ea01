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
    out: dict[str, dict[str, Any]] = {}
    token = None
    while True:
        params: dict[str, Any] = {"per_page": 200, "sort_by": "id", "sort_order": "asc"}
        if token:
            params["page_token"] = token
        r = api.get(f"/crm/v8/{module}", params=params)
        if r.status_code == 204:
            return out
        body = r.json()
        out.update((d["id"], d) for d in body["data"])
        if not body["info"].get("more_records"):
            return out
        token = body["info"]["next_page_token"]


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
