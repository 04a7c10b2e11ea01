"""Drive the async `zoho` SDK (0.1.3) against crmwatch; runs under `.venv-zoho`'s Python.

Reads a job from stdin: {"client_id", "client_secret", "refresh_token", "accounts_domain",
"api_domain" (or null: then the SDK takes it from the token response), "steps": [...]}.
Prints one JSON line: {"results": [...], "requests": [...]} where `requests` is every HTTP
request the SDK sent (method, url, status or error), observed by wrapping httpx's send.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx

SENT: list[dict[str, Any]] = []
_send = httpx.AsyncClient.send


async def _spy_send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
    entry: dict[str, Any] = {
        "method": request.method,
        "url": str(request.url),
        "user_agent": request.headers.get("user-agent"),
        "content_type": request.headers.get("content-type"),
    }
    SENT.append(entry)
    try:
        response = await _send(self, request, **kwargs)
    except Exception as exc:
        entry["error"] = repr(exc)
        raise
    entry["status"] = response.status_code
    return response


httpx.AsyncClient.send = _spy_send  # type: ignore[method-assign]


def plain(value: Any) -> Any:
    """JSON-able form of what the SDK returned (pydantic models, Record mappings)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


async def step(z: Any, s: dict[str, Any]) -> Any:
    op = s["op"]
    crm = z.crm
    if op == "modules.list":
        return await crm.modules.list(use_cache=False)
    if op == "modules.get":
        return await crm.modules.get(s["module"], use_cache=False)
    if op == "org.get":
        return await crm.org.get()
    if op == "records.iter":
        started = time.perf_counter()
        out = [
            plain(r)
            async for r in crm.records.iter(
                module=s["module"], fields=s.get("fields"), per_page=s.get("per_page", 200)
            )
        ]
        return {"records": out, "seconds": time.perf_counter() - started}
    if op == "records.get":
        return plain(
            await crm.records.get(module=s["module"], record_id=s["id"], fields=s.get("fields"))
        )
    if op == "records.create":
        return plain(await crm.records.create(module=s["module"], data=s["data"]))
    if op == "records.update":
        return plain(
            await crm.records.update(module=s["module"], record_id=s["id"], data=s["data"])
        )
    if op == "records.delete":
        return plain(await crm.records.delete(module=s["module"], record_id=s["id"]))
    raise ValueError(f"unknown op {op!r}")


async def main() -> None:
    job = json.loads(sys.stdin.read())
    from zoho import Zoho

    z = Zoho.from_credentials(
        client_id=job["client_id"],
        client_secret=job["client_secret"],
        refresh_token=job["refresh_token"],
        accounts_domain=job["accounts_domain"],
        api_domain=job.get("api_domain"),
        token_store_backend="memory",
        enable_discovery_cache=False,
        log_level="WARNING",
    )
    results: list[dict[str, Any]] = []
    async with z:
        for s in job["steps"]:
            try:
                results.append({"op": s["op"], "value": await step(z, s)})
            except Exception as exc:  # reported, not raised: the test decides
                results.append({"op": s["op"], "exception": f"{type(exc).__name__}: {exc}"})
    print(json.dumps({"results": results, "requests": SENT}, default=str))


if __name__ == "__main__":
    asyncio.run(main())
