"""The HTTP side of one webhook attempt: POST the body, classify the answer as an `Outcome`.

One `Sender` per process holds one aiohttp session: a keep-alive pool of at most
`delivery_max_in_flight` connections over all receivers (aiohttp, not httpx: see
../shared/reference/limits.md §2). `send` never raises for network trouble; timeouts, refused
connections, DNS and TLS errors, denied addresses and bad URLs all come back as an `Outcome`
with an `error`.

Address safety: every name is resolved through `GuardedResolver`, which refuses the whole
lookup when any address it returns is denied, and the connection is made to exactly those
checked addresses, so a DNS answer that changes between check and connect (rebinding) cannot
slip through. aiohttp does not resolve IP-literal hosts at all, so `send` checks those itself
before sending.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict
from yarl import URL

from crmwatch import __version__
from crmwatch.config import Settings
from crmwatch.domain.addresses import AddressPolicy, is_ip_literal
from crmwatch.domain.concurrency import FailureKind
from crmwatch.domain.retry import parse_retry_after

log = logging.getLogger(__name__)

KEEPALIVE_S = 4.0
"""Idle pooled connections are dropped after this; below the 5 s idle timeout of common
servers (uvicorn, Node), so we rarely POST on a connection the receiver is closing."""
DNS_CACHE_S = 10


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to. `failure` and `error` are None exactly when it succeeded
    (a 2xx); `status` is None when no HTTP answer arrived."""

    status: int | None
    latency_ms: float
    response_body: bytes = b""
    retry_after_s: float | None = None
    error: str | None = None
    failure: FailureKind | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def failure_for_status(status: int) -> FailureKind | None:
    """How an HTTP status counts: None for 2xx; 1xx, 3xx (redirects are not followed) and
    other 4xx are "4xx", the receiver refusing rather than being overloaded."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return "429"
    if status == 503:
        return "503"
    if status >= 500:
        return "5xx"
    return "4xx"


class AddressDenied(OSError):
    """The receiver's address is on the deny list."""


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` and refuses the answer if any address in it is denied."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver) -> None:
        self.policy = policy
        self.inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            refusal = self.policy.refusal(result["host"])
            if refusal is not None:
                raise AddressDenied(f"{refusal}; {host} resolves to it")
        return results

    async def close(self) -> None:
        await self.inner.close()


class Sender:
    """Sends webhook attempts; `await start()` (or `async with`) before `send`."""

    def __init__(self, settings: Settings, *, resolver: AbstractResolver | None = None) -> None:
        """`resolver` replaces aiohttp's default resolver (tests); it is guarded all the same."""
        self.policy = settings.address_policy()
        self.timeout = aiohttp.ClientTimeout(
            total=settings.delivery_timeout, sock_connect=settings.delivery_connect_timeout
        )
        self.body_cap = settings.delivery_response_body_cap
        self.max_in_flight = settings.delivery_max_in_flight
        self._ca_file = settings.delivery_ca_file or None
        self._inner_resolver = resolver
        self._resolver: GuardedResolver | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        context = ssl.create_default_context(cafile=self._ca_file)
        inner = self._inner_resolver or aiohttp.DefaultResolver()
        self._resolver = GuardedResolver(self.policy, inner)
        connector = aiohttp.TCPConnector(
            limit=self.max_in_flight,
            limit_per_host=0,
            ttl_dns_cache=DNS_CACHE_S,
            keepalive_timeout=KEEPALIVE_S,
            ssl=context,
            resolver=self._resolver,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            # No decompression (no zip bombs; the body is only logged), no cookies carried
            # from one receiver to the next, no proxies from the environment.
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            headers={"User-Agent": f"crmwatch/{__version__}", "Accept-Encoding": "identity"},
        )

    async def close(self) -> None:
        session, resolver = self._session, self._resolver
        self._session = self._resolver = None
        if session is not None:
            await session.close()
        if resolver is not None:  # not owned by the connector, which only closes its own
            await resolver.close()

    async def __aenter__(self) -> Sender:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """POST `body` as JSON to `url` with `headers`; one attempt, no redirects followed."""
        if self._session is None:
            raise RuntimeError("Sender.send before start()")
        started = time.perf_counter()
        refusal = self._check_url(url)
        if refusal is not None:
            return Outcome(None, _since(started), error=refusal, failure="connection")
        request_headers = CIMultiDict(headers)
        request_headers["Content-Type"] = "application/json"
        try:
            async with self._session.post(
                url, data=body, headers=request_headers, allow_redirects=False
            ) as response:
                status, reason = response.status, response.reason
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), int(time.time() * 1000)
                )
                content = await self._read_capped(response)
        except Exception as exc:  # every failure is an answer, never an exception
            failure, message = self._describe(exc)
            return Outcome(None, _since(started), error=message, failure=failure)
        kind = failure_for_status(status)
        error: str | None = None
        if kind is not None:
            reason = "".join(c for c in reason or "" if c.isprintable())[:200]
            error = f"HTTP {status} {reason}".rstrip()
            if 300 <= status < 400:
                error += " (redirects are not followed)"
        return Outcome(status, _since(started), content, retry_after, error, kind)

    def _check_url(self, url: str) -> str | None:
        """Why `url` cannot be sent to before any connection is tried, else None."""
        try:
            parsed = URL(url)
        except (ValueError, TypeError) as exc:
            return f"invalid URL {url!r}: {exc}"
        if parsed.scheme not in ("http", "https"):
            return f"invalid URL {url!r}: only http and https are supported"
        host = parsed.raw_host
        if not host:
            return f"invalid URL {url!r}: no host"
        if is_ip_literal(host):  # aiohttp connects to these without resolving
            refusal = self.policy.refusal(host)
            if refusal is not None:
                log.debug("not delivering to %s: %s", url, refusal)
                return DENIED
        return None

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        """Up to `body_cap` bytes of the body; the rest is left unread (the connection is then
        closed, not reused). A body cut short by a timeout or a disconnect is kept as far as
        it came: the status already answered."""
        chunks: list[bytes] = []
        remaining = self.body_cap
        try:
            while remaining > 0:
                chunk = await response.content.read(remaining)
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
        except (aiohttp.ClientError, TimeoutError):
            pass
        return b"".join(chunks)

    def _describe(self, exc: Exception) -> tuple[FailureKind, str]:
        """How an attempt without an answer failed, as a category in words: never the
        system's text, addresses or ports, so that the delivery log cannot be used to map
        a network (the details go to the debug log)."""
        log.debug("delivery attempt failed: %r", exc)
        if _denied(exc) is not None:
            return "connection", DENIED
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return "timeout", "connect timed out"
        if isinstance(exc, TimeoutError):
            return "timeout", "timed out"
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return "connection", "TLS certificate not accepted"
        if isinstance(exc, aiohttp.ClientConnectorSSLError):
            return "connection", "TLS handshake failed"
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return "connection", "host name not resolved"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return "connection", _CONNECT_ERRORS.get(exc.os_error.errno or 0, "cannot connect")
        if isinstance(exc, aiohttp.InvalidURL):
            return "connection", "invalid URL"
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
            return "connection", "connection closed before an answer"
        if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
            return "connection", "invalid HTTP answer"
        return "connection", "failed before an answer"


DENIED = "address not allowed"
"""The whole log entry of an attempt to a denied address: which rule refused it is not said
(it would tell what a name resolves to)."""
_CONNECT_ERRORS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
}


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _denied(exc: BaseException) -> AddressDenied | None:
    """`exc` or the first `AddressDenied` among its causes (aiohttp wraps resolver errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, AddressDenied):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
