"""The delivery log, replay and signing secrets under `/crmwatch/v1/` (not in Zoho)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmwatch.api.auth import Caller
from crmwatch.api.http import int_param, json_response, no_content
from crmwatch.api.state import AppState, state
from crmwatch.delivery import signing
from crmwatch.domain import channels as ch
from crmwatch.domain import clock
from crmwatch.domain.errors import InvalidData, InvalidUrlPattern, RequiredParamMissing
from crmwatch.domain.payloads import without_values
from crmwatch.store import deliveries as store_deliveries

STATUSES = ("pending", "retrying", "delivered", "dead", "cancelled")
REPLAYABLE = {"dead": "dead", "failed": "retrying"}


async def _caller(request: Request, operation: str) -> tuple[AppState, Caller]:
    st = state(request)
    caller = await st.gate.caller(request)
    caller.require("notifications", None, operation)
    return st, caller


def _delivery_id(request: Request) -> int:
    raw = request.path_params["delivery_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidUrlPattern()
    return int(raw)


async def list_deliveries(request: Request) -> Response:
    """Deliveries, newest first, filtered by channel and status."""
    st, caller = await _caller(request, "READ")
    q = request.query_params
    page = int_param(request, "page", 1, 1, 10**6)
    per_page = int_param(request, "per_page", 100, 1, 200)
    channel_id = None
    if q.get("channel_id"):
        channel_id = ch.normalise_channel_id(q["channel_id"])
        if channel_id is None:
            raise InvalidData("invalid data", param_name="channel_id")
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidData("invalid status", param_name="status",
                          supported_values=list(STATUSES))
    rows = await st.store.read(store_deliveries.list_log(
        caller.tenant.org.id, channel_id, status, per_page + 1, (page - 1) * per_page))
    if not rows:
        return no_content()
    return json_response({"deliveries": rows[:per_page], "info": {
        "page": page, "per_page": per_page, "count": min(len(rows), per_page),
        "more_records": len(rows) > per_page}})


async def get_delivery(request: Request) -> Response:
    """One delivery with every attempt: request and response bodies, codes, latencies. The
    record values in the request bodies are shown only to callers that may read the module
    (`values_redacted` says when they were left out)."""
    st, caller = await _caller(request, "READ")
    entry = await st.store.read(store_deliveries.get_log(caller.tenant.org.id,
                                                         _delivery_id(request)))
    if entry is None:
        raise InvalidUrlPattern("no such delivery")
    redact = not caller.may_read(entry["module"])
    for attempt in entry["attempt_log"]:
        if redact:
            attempt["request_body"] = without_values(attempt["request_body"])
        attempt["values_redacted"] = redact
    return json_response({"deliveries": [entry]})


async def redeliver(request: Request) -> Response:
    """Send one delivery again (delivered, dead or retrying), now."""
    st, caller = await _caller(request, "UPDATE")
    org_id, delivery_id = caller.tenant.org.id, _delivery_id(request)
    found = await st.store.write(store_deliveries.redeliver_one(org_id, delivery_id,
                                                                st.now_ms()))
    if not found:
        if await st.store.read(store_deliveries.get_log(org_id, delivery_id)) is None:
            raise InvalidUrlPattern("no such delivery")  # as GET .../{id} answers
        raise InvalidData("the delivery cannot be redelivered (pending or cancelled)")
    st.wake_delivery()
    return json_response({"redelivered": 1})


async def redeliver_many(request: Request) -> Response:
    """Send again every dead (`status=dead`) or failing (`status=failed`) delivery since."""
    st, caller = await _caller(request, "UPDATE")
    q = request.query_params
    status = q.get("status")
    if status not in REPLAYABLE:
        raise InvalidData("status must be dead or failed", param_name="status",
                          supported_values=list(REPLAYABLE))
    since = q.get("since")
    if not since:
        raise RequiredParamMissing(param_name="since")
    try:
        since_ms = clock.to_ms(clock.parse_datetime(since))
    except ValueError:
        raise InvalidData("since must be ISO 8601 with an offset", param_name="since") from None
    count = await st.store.write(store_deliveries.redeliver_many(
        caller.tenant.org.id, REPLAYABLE[status], since_ms, st.now_ms()))
    st.wake_delivery()
    return json_response({"redelivered": count})


async def secret(request: Request) -> Response:
    """The org's signing secrets (newest first; older ones during a rotation's grace). They
    let one sign webhooks the org's receivers trust: UPDATE, as for rotating them."""
    st, caller = await _caller(request, "UPDATE")
    secrets = await st.store.write(store_deliveries.signing_secrets(
        caller.tenant.org.id, st.now_ms(), signing.new_secret()))
    return json_response({"secrets": secrets, "scheme": "standard-webhooks v1"})


async def rotate(request: Request) -> Response:
    """A new signing secret; the old ones keep signing for the grace period."""
    st, caller = await _caller(request, "UPDATE")
    secrets = await st.store.write(store_deliveries.rotate_secret(
        caller.tenant.org.id, st.now_ms(), int(st.settings.secret_grace_seconds * 1000),
        signing.new_secret()))
    return json_response({"secrets": secrets, "scheme": "standard-webhooks v1"})


routes = [
    Route("/crmwatch/v1/deliveries", list_deliveries, methods=["GET"]),
    Route("/crmwatch/v1/deliveries/redeliver", redeliver_many, methods=["POST"]),
    Route("/crmwatch/v1/deliveries/{delivery_id}", get_delivery, methods=["GET"]),
    Route("/crmwatch/v1/deliveries/{delivery_id}/redeliver", redeliver, methods=["POST"]),
    Route("/crmwatch/v1/signing-secret", secret, methods=["GET"]),
    Route("/crmwatch/v1/signing-secret/rotate", rotate, methods=["POST"]),
]
