"""The client under the sync, against a real server: tokens, retries, the extras probe."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from crmwatch.client.zoho import REFRESH_MARGIN, ApiError, Credentials, ZohoClient
from tests.conftest import Live, start_server


def client(live: Live, **kwargs: Any) -> ZohoClient:
    return ZohoClient(Credentials(live.client_id, live.client_secret, live.refresh_token),
                      accounts_url=live.base_url, api_url=live.base_url, **kwargs)


class TestTokens:
    """One refresh however many requests wait; a refused token is refreshed once; refreshes
    come ahead of expiry; secrets stay out of reprs."""

    def test_one_refresh_for_many(self, server: Live) -> None:
        async def go() -> int:
            async with client(server, concurrency=16) as zoho:
                await asyncio.gather(*(zoho.fields("Leads") for _ in range(40)))
                return zoho.refreshes
        assert asyncio.run(go()) == 1

    def test_invalid_token_refreshed_once(self, server: Live) -> None:
        async def go() -> tuple[int, int]:
            async with ZohoClient(Credentials(server.client_id, server.client_secret,
                                              server.refresh_token),
                                  accounts_url=server.base_url, api_url=server.base_url,
                                  access_token="1000.bogus.token") as zoho:
                fields = await zoho.fields("Leads")
                return len(fields), zoho.refreshes
        count, refreshes = asyncio.run(go())
        assert count > 10 and refreshes == 1

    def test_refresh_ahead_of_expiry(self, server: Live) -> None:
        async def go() -> float:
            async with client(server) as zoho:
                await zoho.access_token()
                return zoho._expires - time.monotonic()
        left = asyncio.run(go())
        assert 3600 - REFRESH_MARGIN - 5 < left <= 3600 - REFRESH_MARGIN
        assert REFRESH_MARGIN == 120

    def test_secrets_not_in_repr(self, server: Live) -> None:
        creds = Credentials(server.client_id, server.client_secret, server.refresh_token)
        assert server.refresh_token not in repr(creds)
        assert server.client_secret not in repr(creds)


class TestLimits:
    """429 is waited out (Retry-After); errors are not retried without end."""

    def test_429_waited_out(self, tmp_path: Any) -> None:
        live = start_server(f"sqlite:///{tmp_path / 'crm.db'}", bulk_max_active_jobs=1)
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            await asyncio.sleep(min(seconds, 0.3))

        async def go() -> None:
            async with client(live, sleep=sleep, retries=50) as zoho:
                body = {"query": {"module": {"api_name": "Leads"}}}
                await asyncio.gather(zoho.create_bulk_read(body), zoho.create_bulk_read(body))
        try:
            asyncio.run(go())
        finally:
            live.stop()
        assert waits and all(w >= 1 for w in waits)

    def test_errors_end(self, server: Live) -> None:
        async def go() -> None:
            async with client(server, retries=2) as zoho:
                await zoho.call("GET", "/crm/v8/NoSuchModule")
        with pytest.raises(ApiError) as caught:
            asyncio.run(go())
        assert caught.value.status == 400


class TestExtras:
    """The change feed is detected, never assumed."""

    def test_detected(self, server: Live) -> None:
        async def go() -> bool:
            async with client(server) as zoho:
                return await zoho.has_change_feed()
        assert asyncio.run(go()) is True

    def test_absent(self, server: Live) -> None:
        async def go() -> bool:
            async with ZohoClient(Credentials(server.client_id, server.client_secret,
                                              server.refresh_token),
                                  accounts_url=server.base_url,
                                  api_url=server.base_url + "/nowhere") as zoho:
                return await zoho.has_change_feed()
        assert asyncio.run(go()) is False
