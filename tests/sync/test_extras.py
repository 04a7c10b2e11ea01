"""crmwatch's extras: signatures, the channel sequence (a gap starts a catch-up), and a
server restarted under the sync."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import httpx
import orjson
import pytest

from crmwatch.delivery import signing
from crmwatch.store import deliveries
from tests.conftest import FAST_DELIVERY, Live, now_ms, run_flow
from tests.sync.helpers import (
    free_port,
    restart_server,
    start_sync,
    status,
    stop_sync,
    wait_exact,
)
from tests.sync.test_process import channel, log_tail
from tests.sync.test_run import create


def org_secret(live: Live) -> str:
    secrets = run_flow(live.database_url,
                       deliveries.signing_secrets(live.org_id, now_ms(), signing.new_secret()))
    return str(secrets[0])


def signed(secret: str, body: bytes, msg_id: str) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    stamp = str(int(time.time()))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


class TestSignatures:
    """With the org's secret, signed notifications are taken; with another, refused."""

    def test_right_secret(self, server: Live, server_api: httpx.Client, tmp_path: Path) -> None:
        db = f"sqlite:///{tmp_path / 'mirror.db'}"
        create(server_api, 5)
        proc = start_sync(server, db, free_port(), "--signing-secret", org_secret(server),
                          log=tmp_path / "sync.log")
        try:
            wait_exact(server_api, db, proc=proc)
            create(server_api, 3, "S")
            wait_exact(server_api, db, proc=proc)
            n = status(db)["notifications"]
            assert n["received"] >= 1 and n["rejected"] == 0
        finally:
            assert stop_sync(proc) == 0, log_tail(tmp_path)

    def test_gap_starts_a_catch_up(self, server: Live, server_api: httpx.Client,
                                   tmp_path: Path) -> None:
        """Real notifications are refused (another secret), so only a catch-up can bring a
        change; a notification whose sequence skips ahead starts one at once."""
        db = f"sqlite:///{tmp_path / 'mirror.db'}"
        other = signing.new_secret()
        ids = create(server_api, 5)
        port = free_port()
        proc = start_sync(server, db, port, "--signing-secret", other,
                          log=tmp_path / "sync.log")
        try:
            wait_exact(server_api, db, proc=proc)
            server_api.put("/crm/v8/Leads", json={"data": [{"id": ids[0], "Company": "Gap"}]})
            deadline = time.time() + 10
            while status(db)["notifications"]["rejected_by_reason"].get("signature", 0) < 1:
                assert time.time() < deadline
                time.sleep(0.1)
            time.sleep(1)
            assert wait_for_company(db, ids[0]) != "Gap"  # refused, and no catch-up yet
            channel_id, token = channel(db)
            for seq in (1, 5):  # 2..4 never come: a gap
                body = orjson.dumps({"channel_id": channel_id, "token": token,
                                     "module": "Leads", "operation": "update",
                                     "ids": [ids[1]]})
                headers = {**signed(other, body, f"m{seq}"),
                           "X-Crmwatch-Channel-Seq": str(seq),
                           "X-Crmwatch-Previous-Channel-Seq": str(seq - 1)}
                r = httpx.post(f"http://127.0.0.1:{port}/notify", content=body,
                               headers=headers)
                assert r.status_code == 200
            wait_exact(server_api, db, proc=proc, timeout=15)
        finally:
            assert stop_sync(proc) == 0, log_tail(tmp_path)


def wait_for_company(db: str, rid: str) -> object:
    from tests.sync.helpers import mirror_records

    return mirror_records(db)[rid]["Company"]


class TestServerRestart:
    """The server goes away and comes back on the same port: the sync carries on, exact."""

    @pytest.mark.parametrize("plain", [False, True], ids=["crmwatch", "plain-zoho"])
    def test_restart_under_the_sync(self, server: Live, mirror_url: str, tmp_path: Path,
                                    plain: bool) -> None:
        db = mirror_url
        # served again at once from a SO_REUSEADDR socket, so that the restart below can
        # take the port back while the old connections are in TIME-WAIT
        restart_server(server, **FAST_DELIVERY)
        with server.http() as api:
            ids = create(api, 20)
        proc = start_sync(server, db, free_port(), "--catchup-seconds", "2",
                          *(["--plain-zoho"] if plain else []), log=tmp_path / "sync.log")
        try:
            with server.http() as api:
                wait_exact(api, db, proc=proc)
            restart_server(server, **FAST_DELIVERY)
            with server.http() as api:
                api.put("/crm/v8/Leads", json={"data": [{"id": ids[0], "Company": "Back"}]})
                api.delete(f"/crm/v8/Leads/{ids[1]}")
                create(api, 2, "B")
                wait_exact(api, db, proc=proc)
        finally:
            assert stop_sync(proc) == 0, log_tail(tmp_path)
