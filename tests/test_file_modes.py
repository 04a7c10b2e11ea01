"""Files the server writes are its own: the SQLite database (signing secrets, the token key)
and Bulk Read results are created 0600 in 0700 directories, and a results directory that
another user owns or may write is refused."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bulk.test_bulk_read import add_leads, create_job, download, wait_done
from tests.conftest import start_server


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems give (022): without our own modes files would be 0644."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def served(database_url: str, **settings: Any) -> Iterator[httpx.Client]:
    server = start_server(database_url, **settings)
    try:
        with server.http() as client:
            yield client
    finally:
        server.stop()


def export_one(api: httpx.Client) -> dict[str, Any]:
    add_leads(api, [{"Last_Name": "Private"}])
    r = create_job(api, {"module": {"api_name": "Leads"}})
    assert r.status_code == 201, r.text
    return wait_done(api, r.json()["data"][0]["details"]["id"])


class TestDatabaseFiles:
    def test_sqlite_database_wal_and_shm_are_0600(self, tmp_path: Path) -> None:
        db = tmp_path / "crm.db"
        with served(f"sqlite:///{db}") as api:
            add_leads(api, [{"Last_Name": "Secretive"}])
            assert api.get("/crm/v8/Leads").status_code == 200
            files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
            assert all(f.exists() for f in files), os.listdir(tmp_path)
            assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}


class TestBulkResults:
    def test_results_are_0600_in_a_0700_directory(self, database_url: str,
                                                  tmp_path: Path) -> None:
        results = tmp_path / "results"
        with served(database_url, bulk_results_dir=str(results)) as api:
            job = export_one(api)
            assert job["state"] == "COMPLETED", job
            assert any("Private" in row for row in download(api, job["id"]))
        (zipped,) = results.iterdir()
        assert zipped.name == f"{job['id']}.zip"
        assert oct(mode(results)) == "0o700" and oct(mode(zipped)) == "0o600"

    def test_default_directory_beside_sqlite_is_0700(self, tmp_path: Path) -> None:
        with served(f"sqlite:///{tmp_path / 'crm.db'}") as api:
            job = export_one(api)
            assert job["state"] == "COMPLETED", job
        results = tmp_path / "crmwatch-bulk"
        assert oct(mode(results)) == "0o700"
        assert [oct(mode(p)) for p in results.iterdir()] == ["0o600"]

    @pytest.mark.parametrize("unsafe", ["other owner", "world-writable", "group-writable"])
    def test_a_directory_others_control_is_refused(
            self, database_url: str, tmp_path: Path, unsafe: str,
            caplog: pytest.LogCaptureFixture) -> None:
        results = tmp_path / "shared"
        results.mkdir(mode=0o700)
        if unsafe == "other owner":
            if os.geteuid() != 0:
                pytest.skip("only root can give a directory to another user")
            os.chown(results, 65534, 65534)
        else:
            os.chmod(results, 0o777 if unsafe == "world-writable" else 0o770)
        caplog.set_level(logging.WARNING, logger="crmwatch")
        with served(database_url, bulk_results_dir=str(results)) as api:
            job = export_one(api)
            assert job["state"] == "FAILURE", job
            reason = job["result"]["error_message"]["details"]["reason"]
            assert str(results) not in reason and "results directory" in reason, reason
        assert list(results.iterdir()) == []
        lines = [r.getMessage() for r in caplog.records if str(results) in r.getMessage()]
        assert lines, caplog.text
        assert all("\n" not in line and "refused" in line for line in lines), lines
        assert ("owned by uid 65534" if unsafe == "other owner" else "writable by") in lines[0]
        assert any(r.levelno == logging.ERROR for r in caplog.records
                   if r.getMessage() in lines), "said at start too"

    def test_default_directory_for_postgresql_is_the_users_own(self) -> None:
        from crmwatch.bulk import csvzip

        found = csvzip.results_dir("postgresql://db.example/crm")
        assert os.path.basename(found) == f"crmwatch-bulk-{os.geteuid()}"

    def test_serve_warns_about_an_older_database_others_can_read(self, tmp_path: Path) -> None:
        import signal
        import subprocess

        from tests.test_cli import CLI, free_port, run, wait_up

        db = tmp_path / "old.db"
        run("org", "list", db=f"sqlite:///{db}")
        os.chmod(db, 0o644)  # as databases made before files were created private
        port = free_port()
        env = {**os.environ, "CRMWATCH_DATABASE_URL": f"sqlite:///{db}",
               "CRMWATCH_PORT": str(port), "CRMWATCH_LOG_LEVEL": "warning"}
        proc = subprocess.Popen([*CLI, "serve"], env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            wait_up(f"http://127.0.0.1:{port}", proc)
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        assert f"warning: {db} is readable or writable by other users (mode 0644)" in err, err
        assert oct(mode(db)) == "0o644"  # said, not changed: the file is the operator's
