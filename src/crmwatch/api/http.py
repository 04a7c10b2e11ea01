"""Request and response plumbing shared by the routers: JSON in, Zoho-shaped JSON out."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from crmwatch.domain.errors import InvalidData, PayloadTooLarge, ZohoError

JSON_TYPE = "application/json;charset=utf-8"
log = logging.getLogger("crmwatch")


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
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
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
    if b"\\u0000" in body:
        raise InvalidData("NUL characters are not allowed", expected_data_type="jsonobject")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidData("the given JSON is malformed", expected_data_type="jsonobject"
                          ) from None


_INTEGER = re.compile(r"-?[0-9]+")  # [0-9], not \d: "²" and "٣" are \d to Python too


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter from `low` to `high`; absent or empty: `default`.

    Anything else is INVALID_DATA with `details.param_name`: `expected_data_type` when it is
    not a whole number in decimal digits, the range when it is one outside it (checked on the
    text first: int() refuses more than 4,300 digits)."""
    raw = request.query_params.get(name)
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    if not _INTEGER.fullmatch(text):
        raise InvalidData(f"invalid {name}", param_name=name, expected_data_type="integer")
    if len(text.lstrip("-")) > 20 or not low <= int(text) <= high:
        raise InvalidData(f"{name} must be between {low} and {high}", param_name=name)
    return int(text)


def status_for(items: list[dict[str, Any]], success: int) -> int:
    """All succeeded: `success`; all failed: 400; a mix: 207 (Multi-Status)."""
    ok = sum(1 for i in items if i.get("status") == "success")
    if ok == len(items):
        return success
    return 400 if ok == 0 else 207


class Guard:
    """Outermost app wrapper: Zoho's INTERNAL_ERROR for anything unexpected; nothing is
    re-raised to the server, so the client's keep-alive connection stays usable."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if not started:
                from crmwatch.domain.errors import InternalError

                await _send_json(send, InternalError())


async def _send_json(send: Any, err: ZohoError) -> None:
    body = orjson.dumps(err.to_json())
    await send({"type": "http.response.start", "status": err.status_code,
                "headers": [(b"content-type", JSON_TYPE.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
