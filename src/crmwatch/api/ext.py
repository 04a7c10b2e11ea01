"""The `/crmwatch/v1/...` extension API: what Zoho does not have (change feed, health)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmwatch import __version__
from crmwatch.api.http import int_param, json_response
from crmwatch.api.state import state
from crmwatch.domain import clock
from crmwatch.store import records as store_records
from crmwatch.store.base import Flow, Query
from crmwatch.store.channels import CHANNEL_MODULE

MAX_CHANGES = 1000


async def changes(request: Request) -> Response:
    """The org's change journal after `since`, in sequence order (dense, commit order)."""
    st = state(request)
    caller = await st.gate.caller(request)
    caller.require("modules", None, "READ")
    since = int_param(request, "since", 0, 0, 2**62)
    limit = int_param(request, "limit", 100, 1, MAX_CHANGES)
    await st.store.sync_journal()
    rows, head = await st.store.read(store_records.changes(caller.tenant.org.id, since, limit))
    tz = clock.zone(caller.tenant.org.timezone)
    users = caller.tenant.users
    out = []
    for r in rows:
        user = users.get(int(r[7]))
        out.append({
            "seq": int(r[0]), "module": r[1], "id": str(r[2]), "operation": r[3],
            "changed_fields": orjson.loads(r[4]),
            "values": {} if r[1] == CHANNEL_MODULE else orjson.loads(r[5]),
            "time": clock.format_ms(int(r[6]), tz),
            "user": {"id": str(r[7]), "name": user.full_name if user else None},
        })
    last = out[-1]["seq"] if out else since
    return json_response({"changes": out, "info": {
        "since": since, "next_since": last, "head": head, "count": len(out),
        "more_records": bool(out) and last < head}})


async def health(request: Request) -> Response:
    st = state(request)
    try:
        await st.store.read(_ping())
        db = "ok"
    except Exception as exc:  # reported, not raised: health must answer
        db = f"error: {exc}"
    status = 200 if db == "ok" else 503
    return json_response({"status": "ok" if status == 200 else "error", "database": db,
                          "backend": st.store.dialect, "version": __version__}, status)


def _ping() -> Flow[object]:
    value = yield Query("get_meta", ("token_key",), "val")
    return value


async def ping(request: Request) -> Response:
    """A trivial endpoint of the same stack: the benchmarks' ceiling."""
    return json_response({"ok": True})


routes = [
    Route("/crmwatch/v1/ping", ping, methods=["GET", "POST"]),
    Route("/crmwatch/v1/changes", changes, methods=["GET"]),
    Route("/crmwatch/v1/health", health, methods=["GET"]),
]
