"""The `crmwatch` command as a user runs it: real processes, real database files."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import click.testing
import httpx
import pytest

CLI = [sys.executable, "-m", "crmwatch"]


def run(*args: str, db: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRMWATCH_DATABASE_URL": db}
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[str], verify: object = True) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        try:
            if httpx.get(url + "/crmwatch/v1/health", verify=verify).status_code == 200:  # type: ignore[arg-type]
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("server did not come up")


class TestAdminCommands:
    """org, client, schema and seed work on the database file, server running or not."""

    def test_org_and_client(self, tmp_path: Path) -> None:
        db = f"sqlite:///{tmp_path / 'c.db'}"
        out = run("org", "create", "Initech", "--timezone", "Europe/Berlin", db=db).stdout
        assert "Initech" in out and "Europe/Berlin" in out
        bad = run("org", "create", "X", "--timezone", "Mars/Base", db=db, check=False)
        assert bad.returncode != 0 and "time zone" in bad.stderr
        dup = run("org", "create", "Initech", db=db, check=False)
        assert dup.returncode != 0 and "exists" in dup.stderr
        creds = json.loads(run("client", "create", "--org", "Initech", "--json", db=db).stdout)
        assert creds["client_id"].startswith("1000.") and creds["refresh_token"]
        assert creds["org"] == "Initech" and creds["org_id"].isdigit()
        scoped = json.loads(run("client", "create", "--org", "Initech", "--json", "--scopes",
                                "ZohoCRM.modules.leads.READ", db=db).stdout)
        assert scoped["scopes"] == "ZohoCRM.modules.leads.READ"
        bad = run("client", "create", "--org", "Initech", "--scopes", "nonsense", db=db,
                  check=False)
        assert bad.returncode == 2
        code = run("client", "grant", creds["client_id"], db=db).stdout.strip()
        assert code.startswith("1000.")
        bad = run("client", "grant", creds["client_id"], "--scopes", "nonsense", db=db,
                  check=False)
        assert bad.returncode == 2 and "--scopes" in bad.stderr
        assert "Traceback" not in bad.stderr
        bad = run("client", "grant", "1000.nosuchclient", db=db, check=False)
        assert bad.returncode == 1 and "no client" in bad.stderr
        assert "Traceback" not in bad.stderr
        assert "Initech" in run("org", "list", db=db).stdout
        first = run("org", "secret", "--org", "Initech", db=db).stdout.split()
        assert len(first) == 1 and first[0].startswith("whsec_")
        rotated = run("org", "secret", "--org", "Initech", "--rotate", db=db).stdout.split()
        assert len(rotated) == 2 and rotated[1] == first[0]
        bad = run("worker", db=db, check=False)
        assert bad.returncode == 2 and "PostgreSQL" in bad.stderr

    def test_schema_apply_and_seed(self, tmp_path: Path) -> None:
        db = f"sqlite:///{tmp_path / 's.db'}"
        run("org", "create", "acme", db=db)
        schema = tmp_path / "custom.yaml"
        schema.write_text("""
modules:
  - api_name: Projects
    singular_label: Project
    plural_label: Projects
    display_field: Project_Name
    fields:
      - {api_name: Project_Name, label: Project Name, data_type: text, mandatory: true}
      - {api_name: Budget, label: Budget, data_type: currency}
      - {api_name: Tasks_List, label: Tasks, data_type: subform, subform: Project_Tasks}
  - api_name: Project_Tasks
    kind: subform
    parent: Projects
    singular_label: Project Task
    plural_label: Project Tasks
    fields:
      - {api_name: Task, label: Task, data_type: text, mandatory: true}
  - api_name: Leads
    singular_label: Lead
    plural_label: Leads
    fields:
      - api_name: Favourite_Colour
        label: Favourite Colour
        data_type: picklist
        picklist: [Red, Blue]
""")
        assert "applied" in run("schema", "apply", str(schema), db=db).stdout
        broken = tmp_path / "broken.yaml"
        broken.write_text("modules:\n  - api_name: X\n    fields: [{api_name: A}]\n")
        bad = run("schema", "apply", str(broken), db=db, check=False)
        assert bad.returncode == 1 and "required" in bad.stderr
        seeded = run("seed", "--module", "Projects", "--count", "250", "--seed", "1", db=db)
        assert "seeded 250 Projects" in seeded.stdout
        assert "seeding Projects" in seeded.stderr
        run("seed", "--module", "Leads", "--count", "30", db=db)
        bad = run("seed", "--module", "Nope", "--count", "3", db=db, check=False)
        assert bad.returncode == 2

        port = free_port()
        env = {**os.environ, "CRMWATCH_DATABASE_URL": db, "CRMWATCH_PORT": str(port),
               "CRMWATCH_LOG_LEVEL": "warning"}
        creds = json.loads(run("client", "create", "--json", db=db).stdout)
        proc = subprocess.Popen([*CLI, "serve"], env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_up(base, proc)
            token = httpx.post(base + "/oauth/v2/token", data={
                "grant_type": "refresh_token", "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
                "refresh_token": creds["refresh_token"]}).json()["access_token"]
            h = {"Authorization": f"Zoho-oauthtoken {token}"}
            listed = httpx.get(base + "/crm/v8/Projects", headers=h,
                               params={"per_page": 200}).json()
            assert listed["info"]["more_records"] is True and listed["info"]["count"] == 200
            fields = httpx.get(base + "/crm/v8/settings/fields", headers=h,
                               params={"module": "Leads"}).json()["fields"]
            colour = next(f for f in fields if f["api_name"] == "Favourite_Colour")
            assert colour["custom_field"] is True
            r = httpx.post(base + "/crm/v8/Projects", headers=h, json={"data": [
                {"Project_Name": "P", "Tasks_List": [{"Task": "a"}, {"Task": "b"}]}]})
            assert r.status_code == 201, r.text
            assert httpx.get(base + "/crm/v8/Project_Tasks", headers=h).json()["info"][
                "count"] == 2
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=20)


class TestServe:
    """`crmwatch serve` starts on a fresh database, prints how to connect, serves TLS."""

    def test_fresh_database_and_check(self, tmp_path: Path) -> None:
        db = f"sqlite:///{tmp_path / 'fresh.db'}"
        port = free_port()
        env = {**os.environ, "CRMWATCH_DATABASE_URL": db, "CRMWATCH_LOG_LEVEL": "warning"}
        proc = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_up(f"http://127.0.0.1:{port}", proc)
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=20)
        assert f"http://127.0.0.1:{port}" in out
        assert "client create" in out
        assert "default" in run("org", "list", db=db).stdout
        assert run("serve", "--check", db=db).returncode == 0
        bad = run("serve", "--check", db="postgresql://nobody@127.0.0.1:1/none", check=False)
        assert bad.returncode != 0

    def test_tls(self, tmp_path: Path) -> None:
        trustme = pytest.importorskip("trustme")
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert_file, key_file, ca_file = (tmp_path / "c.pem", tmp_path / "k.pem",
                                        tmp_path / "ca.pem")
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        ca.cert_pem.write_to_path(str(ca_file))
        port = free_port()
        env = {**os.environ, "CRMWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}",
               "CRMWATCH_LOG_LEVEL": "warning"}
        proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--ssl-certfile",
                                 str(cert_file), "--ssl-keyfile", str(key_file)], env=env,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            ctx = ssl.create_default_context(cafile=str(ca_file))
            wait_up(f"https://127.0.0.1:{port}", proc, verify=ctx)
            r = httpx.post(f"https://127.0.0.1:{port}/oauth/v2/token", verify=ctx,
                           data={"grant_type": "refresh_token", "client_id": "x"})
            assert r.json() == {"error": "invalid_client"}
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=20)
        assert f"https://127.0.0.1:{port}" in out


class TestOrgDefault:
    """Without --org, org-scoped commands use `default`; a never-served database gets it."""

    @staticmethod
    def cli(db: str, *args: str) -> click.testing.Result:
        from click.testing import CliRunner

        from crmwatch.cli import main

        return CliRunner().invoke(main, list(args), env={"CRMWATCH_DATABASE_URL": db})

    def org_names(self, db: str) -> list[str]:
        out = self.cli(db, "org", "list")
        assert out.exit_code == 0, out.output
        return [line.split()[1] for line in out.output.splitlines()]

    @pytest.mark.parametrize("command", ["seed", "schema apply", "org secret", "client create"])
    def test_never_served_database_gets_default(self, database_url: str, tmp_path: Path,
                                                command: str) -> None:
        schema = tmp_path / "s.yaml"
        schema.write_text("modules:\n  - api_name: Leads\n    singular_label: Lead\n"
                          "    plural_label: Leads\n    fields:\n"
                          "      - {api_name: Shoe_Size, label: Shoe Size, data_type: integer}\n")
        args = {"seed": ["seed", "--module", "Leads", "--count", "3"],
                "schema apply": ["schema", "apply", str(schema)],
                "org secret": ["org", "secret"], "client create": ["client", "create"]}[command]
        out = self.cli(database_url, *args)
        assert out.exit_code == 0, out.output
        assert self.org_names(database_url) == ["default"]
        shown = " ".join(self.cli(database_url, *command.split(), "--help").output.split())
        assert "without --org: the org 'default'" in shown, shown

    def test_default_is_used_beside_other_orgs(self, database_url: str) -> None:
        from tests.conftest import start_server

        assert self.cli(database_url, "seed", "--module", "Leads", "--count", "2").exit_code == 0
        assert self.cli(database_url, "org", "create", "beta").exit_code == 0
        seeded = self.cli(database_url, "seed", "--module", "Leads", "--count", "3")
        assert seeded.exit_code == 0, seeded.output
        assert self.cli(database_url, "org", "secret").exit_code == 0
        made = self.cli(database_url, "client", "create", "--json")
        assert made.exit_code == 0, made.output
        creds = json.loads(made.output)
        assert creds["org"] == "default"
        beta = self.cli(database_url, "seed", "--module", "Leads", "--count", "4", "--org", "beta")
        assert beta.exit_code == 0, beta.output
        server = start_server(database_url, org=None)
        try:
            token = httpx.post(server.base_url + "/oauth/v2/token", data={
                "grant_type": "refresh_token", "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
                "refresh_token": creds["refresh_token"]}).json()["access_token"]
            listed = httpx.get(server.base_url + "/crm/v8/Leads",
                               headers={"Authorization": f"Zoho-oauthtoken {token}"}).json()
            assert listed["info"]["count"] == 5
        finally:
            server.stop()

    def test_several_orgs_without_default_are_refused(self, database_url: str) -> None:
        for name in ("alpha", "beta"):
            assert self.cli(database_url, "org", "create", name).exit_code == 0
        for args in (["seed", "--module", "Leads"], ["client", "create"], ["org", "secret"]):
            out = self.cli(database_url, *args)
            assert out.exit_code == 1, (args, out.output)
            assert "--org" in out.output and "default" in out.output, out.output
        assert sorted(self.org_names(database_url)) == ["alpha", "beta"]
        alone = self.cli(database_url, "seed", "--module", "Leads", "--count", "1", "--org",
                         "alpha")
        assert alone.exit_code == 0, alone.output
