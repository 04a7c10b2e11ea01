"""`crmwatch serve` before authentication: bounded request heads, half-sent requests dropped,
a connection limit, and secrets kept out of its log. Real processes, raw sockets."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_cli import CLI, free_port, run, wait_up


@dataclass
class Served:
    base: str
    port: int
    proc: subprocess.Popen[str]
    db: str

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@contextlib.contextmanager
def serve(tmp_path: Path, output: list[str] | None = None, **env: str) -> Iterator[Served]:
    """`crmwatch serve` on a fresh SQLite file; `output` receives its stdout and stderr."""
    db = f"sqlite:///{tmp_path / 'limits.db'}"
    port = free_port()
    full = {**os.environ, "CRMWATCH_DATABASE_URL": db, "CRMWATCH_PORT": str(port),
            "CRMWATCH_LOG_LEVEL": "warning", **{f"CRMWATCH_{k.upper()}": v
                                                for k, v in env.items()}}
    proc = subprocess.Popen([*CLI, "serve"], env=full, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    served = Served(f"http://127.0.0.1:{port}", port, proc, db)
    try:
        wait_up(served.base, proc)
        yield served
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        if output is not None:
            output.extend([out, err])


def closed_within(sock: socket.socket, seconds: float) -> tuple[float, bytes]:
    """How long until the server closed the connection, and what it sent before (the socket
    is closed after)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {seconds} s; got {received!r}") from None
    finally:
        sock.close()
    return time.monotonic() - started, received


class TestRequestHead:
    def test_a_huge_header_is_refused_without_buffering_it(self, tmp_path: Path) -> None:
        with serve(tmp_path) as served:
            assert httpx.get(served.base + "/crmwatch/v1/health").status_code == 200
            before = served.rss_kib()
            sock = served.connect()
            sock.sendall(b"GET /crm/v8/org HTTP/1.1\r\nHost: x\r\nX-Big: ")
            chunk = b"a" * (1024 * 1024)
            sent = 0
            with contextlib.suppress(OSError):  # the server hangs up part way
                for _ in range(100):
                    sock.sendall(chunk)
                    sent += len(chunk)
            _, answer = closed_within(sock, 10)
            grown = served.rss_kib() - before
            assert sent < 100 * len(chunk), "the server read all 100 MB"
            assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer
            assert grown < 20 * 1024, f"server memory grew by {grown} KiB"
            assert httpx.get(served.base + "/crmwatch/v1/health").status_code == 200

    def test_431_just_above_the_limit_and_an_answer_below_it(self, tmp_path: Path) -> None:
        with serve(tmp_path, max_header_bytes="20000") as served:
            sock = served.connect()
            sock.sendall(b"GET /crmwatch/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: "
                         + b"a" * 20000 + b"\r\n\r\n")
            _, answer = closed_within(sock, 10)
            assert answer.startswith(b"HTTP/1.1 431 "), answer
            assert b"connection: close" in answer.lower()
            ok = httpx.get(served.base + "/crmwatch/v1/health",
                           headers={"X-Big": "a" * 19000})
            assert ok.status_code == 200
            query = httpx.get(served.base + "/crmwatch/v1/health?" + "q" * 21000)
            assert query.status_code == 431


class TestHalfSentRequests:
    def test_a_slow_head_is_dropped_after_header_timeout(self, tmp_path: Path) -> None:
        with serve(tmp_path, header_timeout="1") as served:
            sock = served.connect()
            sock.sendall(b"GET /crmwatch/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            started = time.monotonic()
            with contextlib.suppress(OSError):
                while time.monotonic() - started < 6:  # a byte now and then: never idle
                    sock.sendall(b"a")
                    time.sleep(0.2)
            took, answer = closed_within(sock, 1)
            assert time.monotonic() - started < 3, "not dropped at the header timeout"
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer
            del took

    def test_a_silent_connection_is_dropped(self, tmp_path: Path) -> None:
        with serve(tmp_path, header_timeout="1") as served:
            sock = served.connect()
            took, answer = closed_within(sock, 5)
            assert 0.8 < took < 3 and answer == b""

    def test_a_stalled_body_is_dropped_after_body_timeout(self, tmp_path: Path) -> None:
        with serve(tmp_path, body_timeout="1") as served:
            sock = served.connect()
            sock.sendall(b"POST /oauth/v2/token HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\n"
                         b"Content-Length: 1000\r\n\r\ngrant_type=refresh")
            took, _ = closed_within(sock, 5)
            assert took < 3
            # A body that keeps coming, even slowly, is read to its end.
            sock = served.connect()
            body = b"grant_type=refresh_token&client_id=x"
            sock.sendall(b"POST /oauth/v2/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            for i in range(0, len(body), 8):
                time.sleep(0.3)
                sock.sendall(body[i:i + 8])
            _, answer = closed_within(sock, 5)
            assert answer.startswith(b"HTTP/1.1 200 ") and b"invalid_client" in answer, answer

    def test_idle_keep_alive_connection_is_closed(self, tmp_path: Path) -> None:
        with serve(tmp_path, keep_alive_timeout="1") as served:
            sock = served.connect()
            sock.sendall(b"GET /crmwatch/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            took, answer = closed_within(sock, 5)
            assert answer.startswith(b"HTTP/1.1 200 ") and 0.8 < took < 3


class TestConnectionLimit:
    def test_requests_beyond_max_connections_get_503(self, tmp_path: Path) -> None:
        with serve(tmp_path, max_connections="3") as served:
            idle = [served.connect() for _ in range(3)]
            time.sleep(0.3)
            r = httpx.get(served.base + "/crmwatch/v1/health")
            assert r.status_code == 503
            for sock in idle:
                sock.close()
            time.sleep(0.3)
            assert httpx.get(served.base + "/crmwatch/v1/health").status_code == 200


class TestSecretsInTheLog:
    @pytest.mark.parametrize("level", ["info", "trace"])
    def test_no_secret_reaches_the_log(self, tmp_path: Path, level: str) -> None:
        output: list[str] = []
        db = f"sqlite:///{tmp_path / 'limits.db'}"
        creds = json.loads(run("client", "create", "--json", db=db).stdout)
        code = run("client", "grant", creds["client_id"], db=db).stdout.strip()
        with serve(tmp_path, output, access_log="true", log_level=level) as served:
            url = served.base + "/oauth/v2/token"
            refreshed = httpx.post(url, params={
                "grant_type": "refresh_token", "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
                "refresh_token": creds["refresh_token"]}).json()
            access = refreshed["access_token"]
            exchanged = httpx.post(url + "?grant_type=authorization_code&client_id="
                                   + creds["client_id"] + "&client%5Fsecret="
                                   + creds["client_secret"] + "&code=" + code).json()
            assert exchanged["refresh_token"], exchanged
            r = httpx.get(served.base + "/crm/v8/org?access_token=" + access,
                          headers={"Authorization": f"Zoho-oauthtoken {access}"})
            assert r.status_code == 200
            httpx.post(url + "/revoke", params={"token": exchanged["refresh_token"]})
        text = "\n".join(output)
        assert "/oauth/v2/token?grant_type=refresh_token" in text, text
        assert "client_secret=[redacted]" in text and "code=[redacted]" in text
        for secret in (creds["client_secret"], creds["refresh_token"], code, access,
                       exchanged["refresh_token"], exchanged["access_token"]):
            assert secret not in text, (secret, text)
        assert creds["client_id"] in text  # not a secret: kept for whoever reads the log

    @pytest.mark.postgres
    def test_the_database_password_is_not_printed(self, pg_cluster: Any) -> None:
        from tests.conftest import new_pg_database

        dsn = new_pg_database(pg_cluster)
        assert "://crmwatch@" in dsn  # the test cluster trusts loopback: any password works
        with_password = dsn.replace("://crmwatch@", "://crmwatch:hunter2-pw@")
        port = free_port()
        env = {**os.environ, "CRMWATCH_DATABASE_URL": with_password,
               "CRMWATCH_PORT": str(port), "CRMWATCH_LOG_LEVEL": "info"}
        proc = subprocess.Popen([*CLI, "serve"], env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            wait_up(f"http://127.0.0.1:{port}", proc)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        assert "crmwatch serving" in out
        assert "hunter2-pw" not in out + err, out + err
        assert "crmwatch:[redacted]@127.0.0.1" in out
