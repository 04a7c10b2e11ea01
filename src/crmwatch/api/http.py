"""Request and response plumbing shared by the routers: JSON in, Zoho-shaped JSON out."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from crmwatch.domain.errors import InvalidData, PayloadTooLarge, ZohoError

JSON_TYPE = "application/json;charset=utf-8"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    """A JSON reply; every JSON body carries `application/json;charset=utf-8`."""
    return Response(orjson.dumps(body), status, headers=headers, media_type=JSON_TYPE)


def no_content() -> Response:
    return Response(status_code=204)


def error_response(err: ZohoError) -> Response:
    return json_response(err.to_json(), err.status_code)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past `limit` bytes before or while reading."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    """The body parsed as JSON whatever the Content-Type says (Zoho's SDKs send none).

    An empty body is None; malformed JSON is INVALID_DATA.
    """
    body = await read_body(request, limit)
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidData("the given JSON is malformed", expected_data_type="jsonobject"
                          ) from None


def status_for(items: list[dict[str, Any]], success: int) -> int:
    """All succeeded: `success`; all failed: 400; a mix: 207 (Multi-Status)."""
    ok = sum(1 for i in items if i.get("status") == "success")
    if ok == len(items):
        return success
    return 400 if ok == 0 else 207
