"""A real `crmwatch serve` on a SQLite file, and the clients run as child processes.

The server runs under the harness's own Python (the one running pytest, with crmwatch
installed); each client runs under the Python of its own virtual environment. Clients get
HTTP(S)_PROXY pointing at a dead local port, with NO_PROXY for loopback only: if a client
ever tried to leave for a real Zoho data centre, the request would fail at once instead of
reaching the internet.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLI = [sys.executable, "-m", "crmwatch"]
DEAD_PROXY = "http://127.0.0.1:9"
BIG = 2345  # records past Zoho's 2000-record limit on page-based listing


def _venv_python(env_name: str, default_dir: str) -> Path:
    return Path(os.environ.get(env_name) or REPO / default_dir / "bin" / "python")


AIRBYTE_PYTHON = _venv_python("CRMWATCH_AIRBYTE_PYTHON", ".venv-airbyte")
ZOHO_PYTHON = _venv_python("CRMWATCH_ZOHO_PYTHON", ".venv-zoho")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, db: str) -> str:
    env = {**os.environ, "CRMWATCH_DATABASE_URL": db}
    proc = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert proc.returncode == 0, f"crmwatch {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc.stdout


@dataclass
class Server:
    base_url: str
    db: str
    client_id: str
    client_secret: str
    refresh_token: str
    _token: str = field(default="", repr=False)

    def token(self) -> str:
        if not self._token:
            r = httpx.post(
                self.base_url + "/oauth/v2/token",
                data={
                    "grant_type": "refresh_token",
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "refresh_token": self.refresh_token,
                },
            )
            self._token = r.json()["access_token"]
        return self._token

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            timeout=30,
            headers={"Authorization": f"Zoho-oauthtoken {self.token()}"},
        )

    def all_ids(self, module: str) -> set[str]:
        """Every live record id of `module` (v8 `page_token`: no 2000-record ceiling)."""
        ids: set[str] = set()
        params: dict[str, Any] = {"fields": "id", "per_page": 200}
        with self.api() as api:
            while True:
                r = api.get(f"/crm/v8/{module}", params=params)
                if r.status_code == 204:
                    return ids
                assert r.status_code == 200, r.text
                body = r.json()
                ids.update(rec["id"] for rec in body["data"])
                if not body["info"]["more_records"]:
                    return ids
                params = {
                    "fields": "id",
                    "per_page": 200,
                    "page_token": body["info"]["next_page_token"],
                }


def prepare(
    directory: Path, seed: dict[str, int], timezone: str = "UTC"
) -> tuple[str, dict[str, Any]]:
    """A fresh database with one org, one self client and `seed` records per module."""
    directory.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{directory / 'crm.db'}"
    cli("org", "create", "clients", "--timezone", timezone, db=db)
    creds = json.loads(cli("client", "create", "--org", "clients", "--json", db=db))
    for module, count in seed.items():
        cli("seed", "--module", module, "--count", str(count), "--seed", "7", db=db)
    return db, creds


@contextmanager
def serve(db: str, creds: dict[str, Any], **settings: str) -> Iterator[Server]:
    """`crmwatch serve` on `db`; `settings` become CRMWATCH_<NAME> variables."""
    port = free_port()
    env = {
        **os.environ,
        "CRMWATCH_DATABASE_URL": db,
        "CRMWATCH_PORT": str(port),
        "CRMWATCH_LOG_LEVEL": "warning",
    }
    env.update({f"CRMWATCH_{k.upper()}": v for k, v in settings.items()})
    proc = subprocess.Popen(
        [*CLI, "serve"], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"crmwatch serve exited: {proc.communicate()[1]}")
            try:
                if httpx.get(base + "/crmwatch/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise AssertionError("crmwatch serve did not come up")
            time.sleep(0.1)
        yield Server(base, db, creds["client_id"], creds["client_secret"], creds["refresh_token"])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def child_env(workdir: Path, **extra: str) -> dict[str, str]:
    """Environment for a client process: no way out but loopback, no stray configuration."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith(("ZOHO_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(
        {
            "HTTP_PROXY": DEAD_PROXY,
            "HTTPS_PROXY": DEAD_PROXY,
            "ALL_PROXY": DEAD_PROXY,
            "http_proxy": DEAD_PROXY,
            "https_proxy": DEAD_PROXY,
            "all_proxy": DEAD_PROXY,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "HOME": str(workdir),
            "TZ": "UTC",
            **extra,
        }
    )
    return env


# -- Airbyte ----------------------------------------------------------------------------------


@dataclass
class AirbyteRun:
    returncode: int
    messages: list[dict[str, Any]]
    other_lines: list[str]
    stderr: str
    seconds: float

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    def records(self, stream: str | None = None) -> list[dict[str, Any]]:
        return [
            m["record"]["data"]
            for m in self.of_type("RECORD")
            if stream is None or m["record"]["stream"] == stream
        ]

    def logs(self, level: str | None = None) -> list[str]:
        return [
            m["log"]["message"]
            for m in self.of_type("LOG")
            if level is None or m["log"]["level"] == level
        ]

    def errors(self) -> list[dict[str, Any]]:
        return [
            m["trace"]["error"] for m in self.of_type("TRACE") if m["trace"].get("type") == "ERROR"
        ]

    def explain(self) -> str:
        return (
            f"exit {self.returncode}\nerrors: {json.dumps(self.errors(), indent=1)}\n"
            f"warnings: {self.logs('WARN')}{self.logs('ERROR')}\n"
            f"non-protocol stdout: {self.other_lines[:20]}\nstderr: {self.stderr[-3000:]}"
        )


def run_airbyte(
    server: Server,
    workdir: Path,
    command: str,
    *,
    config: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    state: list[dict[str, Any]] | None = None,
    timeout: float = 600,
    pointed_at_server: bool = True,
) -> AirbyteRun:
    """`airbyte_local.py <command> --config ... [--catalog ...] [--state ...]`, parsed.

    `pointed_at_server=False` runs the connector's entry point without the wrapper, i.e. with
    its built-in Zoho hosts (only to show that the dead proxy stops it).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = {
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "refresh_token": server.refresh_token,
        "dc_region": "US",
        "environment": "Production",
        **(config or {}),
    }
    args = [command]
    files = {"config": cfg if command != "spec" else None, "catalog": catalog, "state": state}
    for name, content in files.items():
        if content is not None:
            path = workdir / f"{name}.json"
            path.write_text(json.dumps(content))
            args += [f"--{name}", str(path)]
    started = time.perf_counter()
    entry = (
        [str(HERE / "airbyte_local.py")]
        if pointed_at_server
        else ["-c", "from source_zoho_crm.run import run; run()"]
    )
    proc = subprocess.run(
        [str(AIRBYTE_PYTHON), *entry, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=workdir,
        env=child_env(workdir, CRMWATCH_BASE_URL=server.base_url),
        check=False,
    )
    seconds = time.perf_counter() - started
    messages, other = [], []
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            other.append(line)
            continue
        (messages if isinstance(msg, dict) and "type" in msg else other).append(msg)
    return AirbyteRun(proc.returncode, messages, other, proc.stderr, seconds)


# -- async zoho SDK ---------------------------------------------------------------------------


def run_zoho(
    server: Server,
    workdir: Path,
    steps: list[dict[str, Any]],
    *,
    api_domain: str | None = "server",
    timeout: float = 300,
) -> dict[str, Any]:
    """One SDK session (zoho_driver.py) running `steps`; its report.

    `api_domain="server"` passes the server's base URL; None leaves the setting out, so the
    SDK uses the token response's `api_domain`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    job = {
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "refresh_token": server.refresh_token,
        "accounts_domain": server.base_url,
        "api_domain": server.base_url if api_domain == "server" else api_domain,
        "steps": steps,
    }
    proc = subprocess.run(
        [str(ZOHO_PYTHON), str(HERE / "zoho_driver.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=workdir,
        env=child_env(workdir),
        check=False,
    )
    assert proc.returncode == 0, f"zoho_driver.py failed:\n{proc.stderr}\n{proc.stdout}"
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report
