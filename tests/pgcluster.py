"""A private, throwaway PostgreSQL cluster for the tests (initdb + pg_ctl on a free port).

Found on PATH or under /usr/lib/postgresql/*/bin. As root, the cluster runs as the
`postgres` OS user (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    root: Path
    port: int
    pg_ctl: str
    user: str | None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://crmwatch@127.0.0.1:{self.port}/{database}"

    def _cmd(self, args: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *args] if self.user else args

    def stop(self) -> None:
        subprocess.run(self._cmd([self.pg_ctl, "-D", str(self.root / "data"), "-m", "immediate",
                                  "stop"]), capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start(durable: bool = False) -> Cluster:
    """Start a new cluster; raises RuntimeError with the reason when it cannot.

    By default the cluster trades durability for speed (fsync, synchronous_commit and
    full_page_writes off), which is what tests want. `durable=True` keeps PostgreSQL's stock
    durability settings, for benchmarks.
    """
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH "
                           "or under /usr/lib/postgresql/*/bin")
    root = Path(tempfile.mkdtemp(prefix="crmwatch-pg-"))
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pw = pwd.getpwnam(user)
        except KeyError as exc:
            raise RuntimeError("running as root and there is no 'postgres' user") from exc
        os.chown(root, pw.pw_uid, pw.pw_gid)
    cluster = Cluster(root, free_port(), pg_ctl, user)
    data = root / "data"
    run = subprocess.run(cluster._cmd([initdb, "-D", str(data), "-U", "crmwatch",
                                       "--auth=trust", "-E", "UTF8", "--no-sync"]),
                         capture_output=True, text=True, check=False)
    if run.returncode:
        raise RuntimeError(f"initdb failed: {run.stderr.strip()[-500:]}")
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {cluster.port}\n"
                   f"unix_socket_directories = '{root}'\nmax_connections = 300\n")
        if not durable:
            conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
    run = subprocess.run(cluster._cmd([pg_ctl, "-D", str(data), "-l", str(root / "log"),
                                       "-w", "-t", "60", "start"]),
                         capture_output=True, text=True, check=False)
    if run.returncode:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        cluster.stop()
        raise RuntimeError(f"pg_ctl start failed: {run.stderr.strip()} {log[-500:]}")
    return cluster
