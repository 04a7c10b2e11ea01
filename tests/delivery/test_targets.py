"""Where webhooks and callbacks may go, what the log says when they cannot, and how many
channels an org may have."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crmwatch.config import Settings
from crmwatch.domain.versions import VERSIONS
from tests.conftest import FAST_DELIVERY, Live, start_server
from tests.receiver import Receiver


@pytest.fixture
def live(fast_live: Live) -> Live:
    return fast_live


@pytest.fixture
def public(database_url: str) -> Iterator[Live]:
    """A server configured as reachable from elsewhere (it listens on every address), with
    no `block_*` decision taken: the defaults apply."""
    server = start_server(database_url, host="0.0.0.0", **FAST_DELIVERY)
    try:
        yield server
    finally:
        server.stop()


def watch(api: httpx.Client, url: str, channel_id: str = "1000",
          version: str = "v8", method: str = "POST") -> httpx.Response:
    return api.request(method, f"/crm/{version}/actions/watch", json={"watch": [{
        "notify_url": url, "channel_id": channel_id, "events": ["Leads.all"]}]})


def create(api: httpx.Client, name: str) -> None:
    r = api.post("/crm/v8/Leads", json={"data": [{"Last_Name": name}]})
    assert r.status_code == 201, r.text


def first_outcome(api: httpx.Client, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = api.get("/crmwatch/v1/deliveries")
        if r.status_code == 200:
            entry = r.json()["deliveries"][-1]
            if entry["attempts"]:
                one = api.get(f"/crmwatch/v1/deliveries/{entry['id']}")
                return one.json()["deliveries"][0]  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("no attempt was made")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestLocalTargetsByDefault:
    """Loopback and private targets are refused unless the server is local-only."""

    def test_auto_follows_where_the_server_listens(self) -> None:
        laptop = Settings().address_policy()
        assert laptop.refusal("127.0.0.1") is None and laptop.refusal("10.1.2.3") is None
        for settings in (Settings(host="0.0.0.0"), Settings(host="10.0.0.5"),
                         Settings(base_url="https://crm.example.com")):
            policy = settings.address_policy()
            assert policy.refusal("127.0.0.1") is not None, settings
            assert policy.refusal("::1") is not None, settings
            assert policy.refusal("192.168.1.1") is not None, settings
        opened = Settings(host="0.0.0.0", block_loopback=False).address_policy()
        assert opened.refusal("127.0.0.1") is None and opened.refusal("10.0.0.1") is not None
        closed = Settings(block_private_networks=True).address_policy()
        assert closed.refusal("10.0.0.1") is not None and closed.refusal("127.0.0.1") is None

    def test_settings_read_auto(self) -> None:
        env = {"CRMWATCH_BLOCK_LOOPBACK": "auto", "CRMWATCH_BLOCK_PRIVATE_NETWORKS": "false"}
        s = Settings.from_env(env)
        assert s.block_loopback is None and s.block_private_networks is False
        with pytest.raises(ValueError, match="CRMWATCH_BLOCK_LOOPBACK"):
            Settings.from_env({"CRMWATCH_BLOCK_LOOPBACK": "sometimes"})

    def test_public_server_refuses_a_name_for_loopback(self, public: Live,
                                                       receiver: Receiver) -> None:
        with public.http() as api:
            r = watch(api, f"http://localhost:{receiver.port}/hook")
            assert r.status_code == 200, r.text  # a name: judged at each attempt
            create(api, "A")
            entry = first_outcome(api)
        assert entry["last_error"] == "address not allowed"
        attempt = entry["attempt_log"][0]
        assert attempt["error"] == "address not allowed"
        assert attempt["status_code"] is None and attempt["response_body"] is None
        assert receiver.received == []

    def test_loopback_allowed_when_the_operator_says_so(self, database_url: str,
                                                        receiver: Receiver) -> None:
        server = start_server(database_url, host="0.0.0.0", block_loopback=False,
                              **FAST_DELIVERY)
        try:
            with server.http() as api:
                assert watch(api, receiver.url).status_code == 200
                create(api, "A")
                receiver.wait_for(1)
        finally:
            server.stop()


class TestFailedConnectionsInTheLog:
    """A failed connection is logged as a category in words: no address, port or OS text."""

    def test_refused_connection(self, live: Live, api: httpx.Client) -> None:
        port = free_port()
        assert watch(api, f"http://127.0.0.1:{port}/x").status_code == 200
        create(api, "A")
        entry = first_outcome(api)
        assert entry["last_error"] == "connection refused"
        attempt = entry["attempt_log"][0]
        assert attempt["error"] == "connection refused"
        assert attempt["response_body"] is None and attempt["status_code"] is None


class TestUndeliverableUrlsRefused:
    """A URL that can never be delivered to is refused when given, on every version."""

    NEVER = ("http://169.254.169.254/latest/meta-data", "http://[::ffff:169.254.169.254]/",
             "http://0.0.0.0:80/", "http://127.1/", "http://", "ftp://example.com/x")
    PUBLIC_ONLY = ("http://127.0.0.1:9/", "http://[::1]:9/", "http://10.1.2.3/")

    def assert_refused(self, r: httpx.Response, path: str = "$.watch[0].notify_url") -> None:
        assert r.status_code == 400, r.text
        item = r.json()["watch"][0]
        assert item["code"] == "INVALID_DATA" and item["status"] == "error", item
        assert item["details"] == {"api_name": "notify_url", "json_path": path}

    @pytest.mark.parametrize("version", VERSIONS)
    def test_enable_replace_merge(self, public: Live, version: str) -> None:
        with public.http() as api:
            for url in (*self.NEVER, *self.PUBLIC_ONLY):
                self.assert_refused(watch(api, url, version=version))
            assert watch(api, "https://hooks.example.com/x", version=version).status_code == 200
            for method in ("PUT", "PATCH"):
                for url in (*self.NEVER, *self.PUBLIC_ONLY):
                    self.assert_refused(watch(api, url, version=version, method=method))
            r = api.get(f"/crm/{version}/actions/watch")
            assert [w["notify_url"] for w in r.json()["watch"]] == ["https://hooks.example.com/x"]

    def test_local_server_takes_loopback(self, live: Live, api: httpx.Client) -> None:
        for url in self.NEVER:
            self.assert_refused(watch(api, url))
        for url in self.PUBLIC_ONLY:
            assert watch(api, url).status_code == 200

    @pytest.mark.parametrize("version", VERSIONS)
    def test_bulk_read_callback(self, public: Live, version: str) -> None:
        with public.http() as api:
            for url in (*self.NEVER, *self.PUBLIC_ONLY):
                r = api.post(f"/crm/bulk/{version}/read", json={
                    "query": {"module": "Leads"}, "callback": {"url": url, "method": "post"}})
                assert r.status_code == 400, (url, r.text)
                err = r.json()["data"][0]
                assert err["code"] == "INVALID_CALLBACK_URL", (url, err)
                assert err["details"] == {"api_name": "url", "json_path": "$.callback.url"}


class TestChannelCap:
    """An org has at most `max_channels_per_org` live channels; more are refused per item."""

    def test_cap(self, database_url: str) -> None:
        server = start_server(database_url, max_channels_per_org=2)
        try:
            with server.http() as api:
                for cid in ("1", "2"):
                    assert watch(api, "https://hooks.example.com/x", cid).status_code == 200
                r = api.post("/crm/v8/actions/watch", json={"watch": [
                    {"notify_url": "https://hooks.example.com/y", "channel_id": "1",
                     "events": ["Leads.create"]},
                    {"notify_url": "https://hooks.example.com/y", "channel_id": "3",
                     "events": ["Leads.create"]}]})
                assert r.status_code == 207, r.text
                ok, refused = r.json()["watch"]
                assert ok["status"] == "success"
                assert refused == {"code": "LIMIT_EXCEEDED", "status": "error",
                                   "message": "the org already has 2 channels, the most it "
                                              "may have",
                                   "details": {"api_name": "channel_id", "limit": 2,
                                               "json_path": "$.watch[1].channel_id"}}
                r = api.delete("/crm/v8/actions/watch", params={"channel_ids": "2"})
                assert r.status_code == 200, r.text
                assert watch(api, "https://hooks.example.com/x", "3").status_code == 200
                r = api.get("/crm/v8/actions/watch")
                assert sorted({w["channel_id"] for w in r.json()["watch"]}) == ["1", "3"]
        finally:
            server.stop()

    def test_default_is_one_hundred(self) -> None:
        assert Settings().max_channels_per_org == 100
