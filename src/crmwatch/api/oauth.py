"""`/oauth/v2/token` and its revocation, as Zoho Accounts answers them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmwatch.api.http import json_response, read_body
from crmwatch.api.state import state
from crmwatch.store import tenants

_FORM_FIELDS = 64
"""Most parts read from a multipart token or revoke body (a grant needs six)."""


async def _params(request: Request, limit: int) -> dict[str, str]:
    """Grant parameters from the query string and a form body, urlencoded or multipart
    (Airbyte uses the query, Zoho's Node.js SDK multipart/form-data)."""
    params = dict(request.query_params)
    body = await read_body(request, limit)
    if body:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() == "multipart/form-data":
            params.update(await _multipart(request.headers, body))
        else:
            with contextlib.suppress(UnicodeDecodeError, ValueError):
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    # NUL never belongs in a credential, and PostgreSQL text cannot hold it.
    return {k: v for k, v in params.items() if "\x00" not in k and "\x00" not in v}


async def _multipart(headers: Headers, body: bytes) -> dict[str, str]:
    """The text fields of a multipart/form-data body; a field sent as a file part counts by
    its content. A malformed body gives no fields (the grant then lacks what it needs)."""
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(headers, stream(), max_files=_FORM_FIELDS,
                             max_fields=_FORM_FIELDS, max_part_size=len(body))
    try:
        form = await parser.parse()
    except MultiPartException:
        return {}
    fields: dict[str, str] = {}
    try:
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields[name] = value
            else:
                with contextlib.suppress(UnicodeDecodeError):
                    fields[name] = (await value.read()).decode("utf-8")
    finally:
        await form.close()
    return fields


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
