"""`GET /crmwatch/v1/digest`: bucket hashes over a module's records (docs/digest.md).

The records are rendered by the records API's own `records.render` (what `GET /crm/v8/{M}
?ids=...` returns) and hashed in the canonical form of `crmwatch.digest`, streamed in id order
a page at a time.
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmwatch import digest
from crmwatch.api.http import json_response
from crmwatch.api.state import state
from crmwatch.domain import clock
from crmwatch.domain import records as rec
from crmwatch.domain.errors import InvalidData, InvalidModule, RequiredParamMissing
from crmwatch.domain.modules import Module
from crmwatch.store import digest as store_digest

MAX_BUCKETS = 10_000
PAGE = 2_000
"""Records read per query: large enough to be cheap, small enough to stay flat in memory."""


def _id_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not clock.is_record_id(raw):
        raise InvalidData(f"{name} must be a record id", param_name=name,
                          expected_data_type="bigint")
    return int(raw)


def _buckets_param(request: Request) -> int:
    raw = request.query_params.get("buckets")
    if raw is None or raw == "":
        return 1
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_BUCKETS:
        raise InvalidData(f"buckets must be a whole number from 1 to {MAX_BUCKETS}",
                          param_name="buckets")
    return int(raw)


def _fields_param(request: Request, module: Module) -> list[str]:
    """The fields hashed: those asked (each a field of the module), or every field the
    records API returns for the module; sorted, without `id`."""
    raw = request.query_params.get("fields")
    if raw is None or not raw.strip():
        return digest.normalize_fields(f.api_name for f in module.fields
                                       if f.data_type != "subform")
    names = [n.strip() for n in raw.split(",") if n.strip()]
    for n in names:
        if n not in module.by_name:
            raise InvalidData("invalid field", api_name=n, param_name="fields")
    return digest.normalize_fields(names)


async def digest_records(request: Request) -> Response:
    st = state(request)
    caller = await st.gate.caller(request)
    name = request.query_params.get("module")
    if not name:
        raise RequiredParamMissing(param_name="module")
    module = caller.tenant.modules.get(name)
    if module is None:
        raise InvalidModule(param_name="module")
    scope_module = caller.tenant.modules.get(module.parent or "") or module
    caller.require("modules", scope_module.scope_name, "READ")
    low = _id_param(request, "from_id")
    high = _id_param(request, "to_id")
    if low is not None and high is not None and low > high:
        raise InvalidData("from_id must not be greater than to_id",
                          param_names=["from_id", "to_id"])
    buckets = _buckets_param(request)
    fields = _fields_param(request, module)

    org = caller.tenant.org
    tz = clock.zone(org.timezone)
    only = frozenset(fields)
    first = 0 if low is None else low
    last = store_digest.LAST_ID if high is None else high
    total = await st.store.read(store_digest.count(org.id, module.api_name, first, last))
    sizes = digest.split_counts(total, buckets)
    whole = digest.BucketHasher(fields)
    out: list[dict[str, object]] = []
    current = digest.BucketHasher(fields)

    def close(bucket: digest.BucketHasher) -> None:
        out.append({"from_id": bucket.first_id, "to_id": bucket.last_id,
                    "count": bucket.count, "hash": bucket.hexdigest()})

    def target() -> int:
        """The size of the bucket being filled; the last one takes what the count missed
        (records created after it)."""
        i = len(out)
        return sizes[i] if i < len(sizes) - 1 else -1

    cursor = first
    while cursor <= last:
        rows = await st.store.read(store_digest.page(org.id, module.api_name, cursor, last,
                                                     PAGE))
        for row in rows:
            rid = int(row[0])
            record = rec.render(module, rid, orjson.loads(row[1]), int(row[2]), int(row[3]),
                                tz, only)
            text = str(rid)
            h = digest.record_hash(record, fields)
            whole.add_hash(text, h)
            if current.count and current.count == target():
                close(current)
                current = digest.BucketHasher(fields)
            current.add_hash(text, h)
        if len(rows) < PAGE:
            break
        cursor = int(rows[-1][0]) + 1
        await asyncio.sleep(0)  # let other requests in between pages
    if current.count:
        close(current)
    return json_response({
        "module": module.api_name, "algorithm": digest.ALGORITHM, "fields": fields,
        "from_id": None if low is None else str(low), "to_id": None if high is None else str(high),
        "count": whole.count, "hash": whole.hexdigest(), "buckets": out})


routes = [Route("/crmwatch/v1/digest", digest_records, methods=["GET"])]
