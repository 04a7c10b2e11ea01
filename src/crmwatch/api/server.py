"""The HTTP server around the app, as `crmwatch serve` runs it: uvicorn with limits before
authentication, and a log that never shows a secret.

uvicorn's httptools protocol (the fast parser, the one `auto` picks) has no limit on the size
of a request head and no timeout for a head or body that stops half way: its keep-alive timer
runs only between requests and is cancelled by every byte received. `LimitedHttpTools` adds:

- `max_header_bytes`: bytes of a request head are counted as they are fed to the parser (a
  read is fed in slices, so the parser holds no more than the limit, plus at most one read
  when a head follows a body in the same read); past it, 431 and the connection is closed.
- `header_timeout`: a deadline for the whole head, from the connection's opening or the
  request's first byte, that trickling bytes do not extend; then the connection is closed,
  with 408 if part of a head came.
- `body_timeout`: while a body is awaited, the connection is closed once no byte came for
  that long (not while the server itself has paused reading: then the client cannot send).

uvicorn's own settings give the rest: keep-alive timeout, `limit_concurrency` (503 beyond it),
backlog. h11 bounds heads by itself (`h11_max_incomplete_event_size`, set to the same limit)
but has none of the timeouts, and is slower; it is not used.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from crmwatch.config import Settings
from crmwatch.domain.redaction import redact


def uvicorn_config(settings: Settings, app: Any) -> uvicorn.Config:
    """The uvicorn configuration of `crmwatch serve` for `settings`."""
    limits = {"max_header_bytes": settings.max_header_bytes,
              "header_timeout": settings.header_timeout,
              "body_timeout": settings.body_timeout}

    def protocol(*args: Any, **kwargs: Any) -> LimitedHttpTools:
        return LimitedHttpTools(*args, limits=limits, **kwargs)

    return uvicorn.Config(
        app, host=settings.host, port=settings.port, http=protocol,  # type: ignore[arg-type]
        log_level=settings.log_level, log_config=log_config(settings.log_level),
        access_log=settings.access_log, proxy_headers=False, server_header=False,
        ssl_certfile=settings.ssl_certfile or None, ssl_keyfile=settings.ssl_keyfile or None,
        lifespan="on", timeout_keep_alive=settings.keep_alive_timeout,
        limit_concurrency=settings.max_connections or None, backlog=settings.backlog,
        h11_max_incomplete_event_size=settings.max_header_bytes)


# -- the log ---------------------------------------------------------------------------------

class RedactSecrets(logging.Filter):
    """Replaces credentials in a record (message, arguments, traceback) by `[redacted]`:
    the access log shows token URLs with `client_secret=` in their query string, uvicorn's
    trace level shows the request headers."""

    _format = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self._format.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _redact_arg(value: Any) -> Any:
    if value is None or isinstance(value, int | float):
        return value  # numbers stay numbers (the access log formats its status code)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = value if isinstance(value, str) else str(value)
    cleaned = redact(text)
    return value if cleaned == text and not isinstance(value, str) else cleaned


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup with the secrets filter on every handler; crmwatch's own
    loggers (and other libraries' warnings) go to the same stderr handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"secrets": {"()": RedactSecrets}}
    for handler in config["handlers"].values():
        handler["filters"] = ["secrets"]
    config["loggers"]["crmwatch"] = {"level": level.upper()}
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config


# -- the protocol ----------------------------------------------------------------------------

class LimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head-size limit and head and body timeouts."""

    def __init__(self, *args: Any, limits: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head: int = limits["max_header_bytes"]
        self.head_timeout: float = limits["header_timeout"]
        self.body_timeout: float = limits["body_timeout"]
        self.in_head = True
        """Between requests or inside a head (not inside a body)."""
        self.head_bytes = 0
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.body_seen = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        while data and not self.transport.is_closing():
            if self.in_head:
                if self.head_timer is None:
                    self._arm_head_timer()
                room = self.max_head - self.head_bytes
                if room <= 0:
                    self._refuse(431)
                    return
                piece, data = data[:room], data[room:]
                self.head_bytes += len(piece)
            else:
                piece, data = data, b""
                self.body_seen = self.loop.time()
            super().data_received(piece)

    # parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        self.body_seen = self.loop.time()
        if self.body_timer is None and self.body_timeout > 0:
            self.body_timer = self.loop.call_later(self.body_timeout, self._body_stalled)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.in_head = True
        self.head_bytes = 0
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        super().on_message_complete()

    # timers

    def _arm_head_timer(self) -> None:
        if self.head_timeout > 0:
            self.head_timer = self.loop.call_later(self.head_timeout, self._head_late)

    def _head_late(self) -> None:
        self.head_timer = None
        if not self.in_head or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # the head of a pipelined request behind one still answered: not late
        if self.head_bytes:
            self._refuse(408)
        else:
            self.transport.close()

    def _body_stalled(self) -> None:
        self.body_timer = None
        if self.in_head or self.transport.is_closing():
            return
        idle = self.loop.time() - self.body_seen
        if self.flow.read_paused or idle < self.body_timeout:
            # Reading is paused by the server (the app has not taken the body yet): the
            # client cannot send; or a byte came since: wait again.
            wait = self.body_timeout if self.flow.read_paused else self.body_timeout - idle
            self.body_timer = self.loop.call_later(wait, self._body_stalled)
            return
        self.logger.warning("Request body stalled for %s s: connection closed.",
                            self.body_timeout)
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self.head_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.body_timer = None

    def _refuse(self, status: int) -> None:
        """An answer without the app, then the connection is closed."""
        reason = {431: "Request header fields too large", 408: "Request timeout"}[status]
        body = reason.encode("ascii")
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: text/plain; charset=utf-8\r\n",
                 b"content-length: ", str(len(body)).encode("ascii"), b"\r\n",
                 b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))
        self.transport.close()
        self._cancel_timers()
