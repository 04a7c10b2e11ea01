"""Run an official-SDK driver script in a child process against a live server.

The SDKs keep process-wide state (the Initializer singleton, field-metadata caches, handlers
added to the `SDKLogger` logger on every initialise), so each SDK session runs in its own
Python process. Non-loopback traffic is sent to a dead proxy: if an SDK ever tried to leave
for a real Zoho data centre, the request would fail at once instead of reaching the internet.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Live

HERE = Path(__file__).parent
DEAD_PROXY = "http://127.0.0.1:9"
_REQUEST = re.compile(
    r" - (GET|POST|PUT|PATCH|DELETE) - URL = (\S+) , HEADERS = (\{.*\}) , PARAMS = (\{.*\})\.$")


def run_driver(driver: str, live: Live, workdir: Path, steps: list[dict[str, Any]],
               tz: str = "UTC", timeout: float = 60, **credentials: str) -> dict[str, Any]:
    """Run `driver` (a file next to this one) with `steps`; its JSON report.

    `credentials` (client_id, client_secret, refresh_token) replace the live server's own.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    job = {"base_url": live.base_url, "client_id": live.client_id,
           "client_secret": live.client_secret, "refresh_token": live.refresh_token,
           "workdir": str(workdir), "steps": steps, **credentials}
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update({"TZ": tz, "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY,
                "http_proxy": DEAD_PROXY, "https_proxy": DEAD_PROXY,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    proc = subprocess.run([sys.executable, str(HERE / driver)], input=json.dumps(job),
                          capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=workdir, check=False)
    assert proc.returncode == 0, f"{driver} failed:\n{proc.stderr}\n{sdk_log(workdir)}"
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def sdk_log(workdir: Path) -> str:
    path = workdir / "sdk.log"
    return path.read_text() if path.exists() else ""


def logged_requests(workdir: Path) -> list[dict[str, Any]]:
    """Every API request the SDK logged (not the token request): method, url, headers, params."""
    out = []
    for line in sdk_log(workdir).splitlines():
        m = _REQUEST.search(line)
        if m:
            out.append({"method": m[1], "url": m[2], "headers": json.loads(m[3]),
                        "params": json.loads(m[4])})
    return out


# Both SDKs log a response they failed to parse at INFO level, with this text, and return None.
_SWALLOWED = "Exception in current API call execution : "


def logged_errors(workdir: Path) -> list[str]:
    """SDK log lines reporting an error, including parse failures the SDK swallowed."""
    return [line for line in sdk_log(workdir).splitlines()
            if " - SDKLogger - ERROR - " in line or " - SDKLogger - CRITICAL - " in line
            or _SWALLOWED in line]


def sent_requests(workdir: Path) -> list[dict[str, Any]]:
    """The watch requests a notify driver saw the SDK send (tests/clients/wirespy.py): method,
    url, params, headers and the body as text."""
    path = workdir / "sent.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
