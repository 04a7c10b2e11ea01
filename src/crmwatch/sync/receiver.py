"""The webhook receiver: takes a notification only when it is ours, queues it durably, then
answers 2xx; everything else is refused with 4xx, counted and logged, and changes nothing.

Ours means: a JSON object whose `channel_id` and `token` are the mirror's channel's, about a
mirrored module, with an operation and ids of the documented shapes, and (when a signing
secret is configured) a Standard Webhooks signature that verifies. The answer comes after the
`_inbox` insert committed, so an acknowledged notification survives a kill -9.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import orjson
from aiohttp import web

from crmwatch.sync import signature
from crmwatch.sync.mirror import Mirror

log = logging.getLogger("crmwatch.sync")
OPERATIONS = frozenset({"insert", "update", "delete"})
MAX_BODY_BYTES = 1 << 20
"""The largest notification accepted (Zoho's hold at most a few hundred ids)."""


class Refused(Exception):
    """A request that is not one of our notifications; `reason` is counted."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status = status
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


@dataclass(frozen=True)
class Notification:
    module: str
    operation: str
    ids: list[str]
    channel_seq: int | None
    previous_seq: int | None


def _seq(value: str | None) -> int | None:
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def parse(body: bytes, headers: dict[str, str], *, channel_id: str, token: str,
          modules: Collection[str], key: bytes | None, now_s: float) -> Notification:
    """The notification in a request, or Refused (pure: the checks of the module docstring)."""
    if key is not None and not signature.verify(key, headers, body, now_s):
        raise Refused(401, "signature", "no valid webhook signature")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Refused(400, "not_json", "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise Refused(400, "invalid", "the body is not a JSON object")
    if str(doc.get("channel_id")) != channel_id:
        raise Refused(403, "channel", "not this mirror's channel")
    if doc.get("token") != token:
        raise Refused(403, "token", "wrong token")
    module, operation, ids = doc.get("module"), doc.get("operation"), doc.get("ids")
    if not isinstance(module, str) or module not in modules:
        raise Refused(400, "invalid", f"module {module!r} is not mirrored")
    if operation not in OPERATIONS:
        raise Refused(400, "invalid", f"unknown operation {operation!r}")
    if not isinstance(ids, list) or not all(
            isinstance(i, str | int) and not isinstance(i, bool) and str(i).isascii()
            and str(i).isdigit() for i in ids):
        raise Refused(400, "invalid", "ids must be an array of record ids")
    return Notification(module, str(operation), [str(int(i)) for i in ids],
                        _seq(headers.get("x-crmwatch-channel-seq")),
                        _seq(headers.get("x-crmwatch-previous-channel-seq")))


class Receiver:
    """The aiohttp app around `parse` and `Mirror.enqueue`."""

    def __init__(self, mirror: Mirror, *, channel_id: str, token: str, modules: Collection[str],
                 secret: str | None = None, max_body: int = MAX_BODY_BYTES,
                 on_queued: Callable[[Notification], None] | None = None) -> None:
        self.mirror = mirror
        self.channel_id = channel_id
        self.token = token
        self.modules = frozenset(modules)
        self.key = signature.key_of(secret) if secret else None
        self.max_body = max_body
        self.on_queued = on_queued
        self.runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body + 1)
        app.router.add_route("POST", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        try:
            if (request.content_length or 0) > self.max_body:
                raise Refused(413, "too_large", f"body over {self.max_body} bytes")
            body = await request.content.read(self.max_body + 1)
            if len(body) > self.max_body:
                raise Refused(413, "too_large", f"body over {self.max_body} bytes")
            headers = {k.lower(): v for k, v in request.headers.items()}
            note = parse(body, headers, channel_id=self.channel_id, token=self.token,
                         modules=self.modules, key=self.key, now_s=time.time())
        except Refused as refused:
            log.warning("notification refused (%s): %s", refused.reason, refused.detail)
            await self.mirror.count("rejected")
            await self.mirror.count(f"rejected_{refused.reason}")
            return web.json_response({"status": "error", "code": refused.reason.upper(),
                                      "message": refused.detail}, status=refused.status)
        await self.mirror.enqueue(note.module, note.operation, note.ids, note.channel_seq)
        if self.on_queued is not None:
            self.on_queued(note)
        return web.Response(status=200, text="ok")

    async def start(self, host: str, port: int) -> None:
        """Listen (SO_REUSEADDR, so that a restart may take the port at once; a port another
        process listens on still fails with OSError)."""
        self.runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True, reuse_port=False)
        try:
            await site.start()
        except OSError:
            await self.runner.cleanup()
            self.runner = None
            raise

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
