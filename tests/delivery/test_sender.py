"""Sender: one webhook attempt against real receivers on loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from crmwatch.config import Settings
from crmwatch.delivery.sender import DENIED, GuardedResolver, Outcome, Sender, failure_for_status
from crmwatch.domain.addresses import AddressPolicy

BIG = 1024 * 1024


@dataclass
class Receiver:
    """An aiohttp app on a loopback port that records requests and the connections they
    came on."""

    port: int = 0
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)
    scheme: str = "http"

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.path, dict(request.headers), body))
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername")[:2])
        kind = request.match_info["kind"]
        if kind == "slow":
            await asyncio.sleep(5)
        if kind == "429":
            return web.Response(status=429, headers={"Retry-After": "120"})
        if kind == "503":
            return web.Response(status=503, text="busy", headers={"Retry-After": "7"})
        if kind == "500":
            return web.Response(status=500, text="boom")
        if kind == "404":
            return web.Response(status=404)
        if kind == "redirect":
            raise web.HTTPFound(self.url("/ok"))
        if kind == "big":
            return web.Response(body=b"x" * BIG)
        if kind == "stall":  # headers and a little body, then nothing
            response = web.StreamResponse()
            response.content_length = 100
            await response.prepare(request)
            await response.write(b"start")
            await asyncio.sleep(5)
            return response
        if kind == "drop":
            request.transport.close()
            return web.Response()
        return web.Response(status=200 if kind == "ok" else 204, text="thanks")


@contextlib.asynccontextmanager
async def receiving(context: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver(scheme="https" if context else "http")
    app = web.Application()
    app.router.add_post("/{kind}", receiver.handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    assert runner.addresses
    receiver.port = runner.addresses[0][1]
    try:
        yield receiver
    finally:
        await runner.cleanup()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


def settings(**kw: Any) -> Settings:
    defaults: dict[str, Any] = {"delivery_timeout": 2.0, "delivery_connect_timeout": 1.0}
    return Settings(**(defaults | kw))


async def post(sender: Sender, url: str, body: bytes = b'{"a":1}') -> Outcome:
    return await sender.send(url, body, {"webhook-id": "msg_1", "X-Extra": "yes"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestAnswers:
    """HTTP answers become outcomes: 2xx succeeds, the rest fail by kind."""

    def test_success(self) -> None:
        async def go() -> None:
            async with receiving() as rx, Sender(settings()) as sender:
                out = await post(sender, rx.url("/ok"))
                assert out == Outcome(200, out.latency_ms, b"thanks")
                assert out.ok and out.latency_ms > 0
                assert (await post(sender, rx.url("/accepted"))).status == 204
            path, headers, body = rx.requests[0]
            assert (path, body) == ("/ok", b'{"a":1}')
            assert headers["Content-Type"] == "application/json"
            assert headers["webhook-id"] == "msg_1" and headers["X-Extra"] == "yes"
            assert "gzip" not in headers.get("Accept-Encoding", "")

        run(go)

    @pytest.mark.parametrize(
        ("path", "status", "failure", "retry_after"),
        [
            ("/429", 429, "429", 120.0),
            ("/503", 503, "503", 7.0),
            ("/500", 500, "5xx", None),
            ("/404", 404, "4xx", None),
        ],
    )
    def test_failures(
        self, path: str, status: int, failure: str, retry_after: float | None
    ) -> None:
        async def go() -> None:
            async with receiving() as rx, Sender(settings()) as sender:
                out = await post(sender, rx.url(path))
            assert (out.status, out.failure, out.retry_after_s) == (status, failure, retry_after)
            assert out.error is not None and out.error.startswith(f"HTTP {status}")

        run(go)

    def test_redirect_not_followed(self) -> None:
        async def go() -> None:
            async with receiving() as rx, Sender(settings()) as sender:
                out = await post(sender, rx.url("/redirect"))
            assert (out.status, out.failure) == (302, "4xx")
            assert out.error == "HTTP 302 Found (redirects are not followed)"
            assert [p for p, _, _ in rx.requests] == ["/redirect"]

        run(go)

    def test_big_body_truncated(self) -> None:
        async def go() -> None:
            async with receiving() as rx, Sender(settings()) as sender:
                out = await post(sender, rx.url("/big"))
                assert out.ok and out.response_body == b"x" * 16384
                assert (await post(sender, rx.url("/ok"))).ok

        run(go)

    def test_status_classes(self) -> None:
        assert [failure_for_status(s) for s in (200, 299, 100, 301, 400, 429, 503, 502, 599)] == [
            None,
            None,
            "4xx",
            "4xx",
            "4xx",
            "429",
            "503",
            "5xx",
            "5xx",
        ]


class TestNetworkTrouble:
    """Timeouts, refusals and dropped connections are outcomes, never exceptions."""

    def test_timeout(self) -> None:
        async def go() -> None:
            async with receiving() as rx, Sender(settings(delivery_timeout=0.3)) as sender:
                out = await post(sender, rx.url("/slow"))
            assert (out.status, out.failure) == (None, "timeout")
            assert out.error == "timed out"
            assert 250 < out.latency_ms < 2000

        run(go)

    def test_body_stalls_after_success(self) -> None:
        async def go() -> None:
            async with receiving() as rx, Sender(settings(delivery_timeout=0.3)) as sender:
                out = await post(sender, rx.url("/stall"))
            assert out == Outcome(200, out.latency_ms, b"start")  # the status answered

        run(go)

    def test_refused(self) -> None:
        async def go() -> None:
            port = free_port()
            async with Sender(settings()) as sender:
                out = await post(sender, f"http://127.0.0.1:{port}/x")
            assert (out.status, out.failure) == (None, "connection")
            assert out.error == "connection refused"  # a category: no address, no OS text

        run(go)

    def test_dropped(self) -> None:
        async def go() -> None:
            async with receiving() as rx, Sender(settings()) as sender:
                out = await post(sender, rx.url("/drop"))
                assert (out.status, out.failure) == (None, "connection")
                assert out.error == "connection closed before an answer"
                assert (await post(sender, rx.url("/ok"))).ok

        run(go)

    def test_dns_failure(self) -> None:
        async def go() -> None:
            async with Sender(settings()) as sender:
                out = await post(sender, "http://no-such-host.invalid/x")
            assert (out.status, out.failure) == (None, "connection")
            assert out.error == "host name not resolved"

        run(go)

    @pytest.mark.parametrize(
        "url", ["not a url", "ftp://example.com/x", "http:///nohost", "http://[::1/", ""]
    )
    def test_bad_urls(self, url: str) -> None:
        async def go() -> None:
            async with Sender(settings()) as sender:
                out = await post(sender, url)
            assert (out.status, out.failure) == (None, "connection")
            assert out.error is not None and "URL" in out.error

        run(go)

    def test_not_started(self) -> None:
        async def go() -> None:
            with pytest.raises(RuntimeError):
                await post(Sender(settings()), "http://127.0.0.1:1/")

        run(go)


class TestKeepAlive:
    """Connections are pooled and reused."""

    def test_sequential_reuse_one_connection(self) -> None:
        async def go() -> None:
            async with receiving() as rx, Sender(settings()) as sender:
                for _ in range(10):
                    assert (await post(sender, rx.url("/ok"))).ok
            assert len(rx.requests) == 10
            assert len(rx.peers) == 1

        run(go)

    def test_concurrent_bounded_by_pool(self) -> None:
        async def go() -> None:
            async with receiving() as rx, Sender(settings(delivery_max_in_flight=3)) as sender:
                outs = await asyncio.gather(*(post(sender, rx.url("/ok")) for _ in range(30)))
            assert all(o.ok for o in outs)
            assert len(rx.peers) <= 3

        run(go)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, ca_file


class TestTLS:
    """Receivers' certificates are verified, against the configured CA file if any."""

    def test_verified_with_ca_file(self, tls: tuple[ssl.SSLContext, Path]) -> None:
        context, ca_file = tls

        async def go() -> None:
            async with (
                receiving(context) as rx,
                Sender(settings(delivery_ca_file=str(ca_file))) as sender,
            ):
                assert (await post(sender, rx.url("/ok"))).ok
                assert (await post(sender, rx.url("/ok", host="localhost"))).ok
            assert len(rx.peers) == 2  # one pooled connection per host name

        run(go)

    def test_rejected_without(self, tls: tuple[ssl.SSLContext, Path]) -> None:
        context, _ = tls

        async def go() -> None:
            async with receiving(context) as rx, Sender(settings()) as sender:
                out = await post(sender, rx.url("/ok"))
            assert (out.status, out.failure) == (None, "connection")
            assert out.error is not None and "certificate" in out.error.lower()
            assert rx.requests == []

        run(go)


class FixedResolver(AbstractResolver):
    """Answers every name with the given addresses (a DNS server under someone's control)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


class TestAddressSafety:
    """Denied addresses are refused whether written as literals or reached through DNS."""

    def test_metadata_literal_refused_by_default(self) -> None:
        async def go() -> None:
            async with Sender(settings()) as sender:
                for url in [
                    "http://169.254.169.254/latest/meta-data/",
                    "http://[::ffff:169.254.169.254]/",
                    "http://[fd00:ec2::254]/",
                ]:
                    out = await post(sender, url)
                    assert out.failure == "connection" and out.status is None
                    assert out.error == DENIED
                out = await post(sender, "http://0.0.0.0:80/")
                assert out.error == DENIED

        run(go)

    def test_loopback_allowed_by_default(self) -> None:
        async def go() -> None:
            async with receiving() as rx, Sender(settings()) as sender:
                assert (await post(sender, rx.url("/ok"))).ok
                assert (await post(sender, rx.url("/ok", host="localhost"))).ok

        run(go)

    @pytest.mark.parametrize(
        "host",
        [
            "127.0.0.1", "[::1]", "[::ffff:127.0.0.1]",
            # aiohttp connects to IP literals without asking the resolver: checked up front
            # (these three are not valid IP addresses, and refused as such)
            "127.1", "2130706433", "127.0.0.1.",
            # names go through the guarded resolver
            "localhost", "0x7f.0.0.1",
        ],
    )
    def test_loopback_blocked(self, host: str) -> None:
        async def go() -> None:
            async with receiving() as rx, Sender(settings(block_loopback=True)) as sender:
                out = await post(sender, rx.url("/ok", host=host))
            assert (out.status, out.failure, out.error) == (None, "connection", DENIED)
            assert rx.requests == []

        run(go)

    def test_denied_says_nothing_else(self) -> None:
        """The log entry does not tell which rule refused, nor what a name resolves to."""
        async def go() -> None:
            async with Sender(settings(block_loopback=True)) as sender:
                out = await post(sender, "http://localhost:9/")
            assert out == Outcome(None, out.latency_ms, error=DENIED, failure="connection")

        run(go)

    def test_name_resolving_to_metadata(self) -> None:
        async def go() -> None:
            resolver = FixedResolver("93.184.216.34", "169.254.169.254")
            async with Sender(settings(), resolver=resolver) as sender:
                out = await post(sender, "http://rebind.example/")
            assert out.error == DENIED
            assert resolver.closed

        run(go)

    def test_denied_networks_setting(self) -> None:
        async def go() -> None:
            async with (
                receiving() as rx,
                Sender(settings(denied_networks="10.0.0.0/8, 127.0.0.2/31")) as sender,
            ):
                out = await post(sender, rx.url("/ok", host="127.0.0.3"))
                assert out.error == DENIED and rx.requests == []
                assert (await post(sender, rx.url("/ok"))).ok

        run(go)

    def test_bad_denied_networks_fail_at_startup(self) -> None:
        with pytest.raises(ValueError, match="CRMWATCH_DENIED_NETWORKS"):
            Sender(settings(denied_networks="10.0.0.0/33"))

    def test_private_blocked_through_dns(self) -> None:
        async def go() -> None:
            resolver = FixedResolver("10.1.2.3")
            async with Sender(settings(block_private_networks=True), resolver=resolver) as s:
                out = await post(s, "http://intranet.example/")
            assert out.error == DENIED

        run(go)

    def test_guarded_resolver_directly(self) -> None:
        async def go() -> None:
            guard = GuardedResolver(AddressPolicy(), FixedResolver("8.8.8.8"))
            assert [r["host"] for r in await guard.resolve("dns.example", 443)] == ["8.8.8.8"]
            guard = GuardedResolver(AddressPolicy(), FixedResolver("fe80::1"))
            with pytest.raises(OSError, match="link-local"):
                await guard.resolve("dns.example", 443)
            guard = GuardedResolver(AddressPolicy(block_private=True), FixedResolver("10.1.2.3"))
            with pytest.raises(OSError, match=r"10\.1\.2\.3 is not allowed \(private network\)"):
                await guard.resolve("intranet.example", 80)

        run(go)


class TestUvloop:
    """The sender works on uvloop, the loop the workers run on."""

    def test_uvloop(self) -> None:
        async def go() -> None:
            async with receiving() as rx, Sender(settings(block_loopback=True)) as blocked:
                assert (await post(blocked, rx.url("/ok", host="localhost"))).failure
                async with Sender(settings()) as sender:
                    outs = [await post(sender, rx.url("/ok")) for _ in range(3)]
            assert all(o.ok for o in outs) and len(rx.peers) == 1

        uvloop.run(go())
