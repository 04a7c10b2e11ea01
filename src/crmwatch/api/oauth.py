"""`/oauth/v2/token` and its revocation, as Zoho Accounts answers them."""

from __future__ import annotations

import contextlib
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmwatch.api.http import json_response, read_body
from crmwatch.api.state import state
from crmwatch.store import tenants


async def _params(request: Request, limit: int) -> dict[str, str]:
    """Grant parameters from the query string and a form body (Airbyte uses the query)."""
    params = dict(request.query_params)
    body = await read_body(request, limit)
    if body:
        with contextlib.suppress(UnicodeDecodeError, ValueError):
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    # NUL never belongs in a credential, and PostgreSQL text cannot hold it.
    return {k: v for k, v in params.items() if "\x00" not in k and "\x00" not in v}


async def token(request: Request) -> Response:
    st = state(request)
    params = await _params(request, 64 * 1024)
    answer = await st.store.write(tenants.issue_token(
        st.gate.key, params, st.now_ms(), st.base_url))
    return json_response(answer)


async def revoke(request: Request) -> Response:
    st = state(request)
    params = await _params(request, 64 * 1024)
    secret = params.get("token", "")
    if not secret or not await st.store.write(tenants.revoke(st.gate.key, secret, st.now_ms())):
        return json_response({"error": "invalid_request"})
    st.gate.forget_all_tokens()
    return json_response({"status": "success"})


routes = [
    Route("/oauth/v2/token", token, methods=["POST"]),
    Route("/oauth/v2/token/revoke", revoke, methods=["POST"]),
]
