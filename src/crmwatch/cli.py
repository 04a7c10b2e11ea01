"""The `crmwatch` command: serve (default), org, client, schema, seed, bulk-read, sync."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from crmwatch.client.options import check_server, make_client, server_options
from crmwatch.config import Settings, env_name
from crmwatch.domain.redaction import redact
from crmwatch.store.base import Flow

if TYPE_CHECKING:
    from crmwatch.client.bulkread import Page
    from crmwatch.domain.scopes import Scope
    from crmwatch.store.tenants import Org

T = TypeVar("T")


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(os.environ, **overrides)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from exc


def _open(settings: Settings) -> Any:
    from crmwatch.store import open_store

    return open_store(settings.database_url)


def _run(settings: Settings, work: Callable[[Any], Coroutine[Any, Any, T]], *,
         sequencer: bool = False) -> T:
    """Open the store, migrate, run `work(store)`, close; database errors end the command."""
    from crmwatch.store import tenants
    from crmwatch.store.base import StoreError

    async def main() -> T:
        store = _open(settings)
        if hasattr(store, "run_sequencer"):
            store.run_sequencer = sequencer
        try:
            await store.migrate()
            await store.start()
            await store.write(tenants.refresh_key_fields())
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except (StoreError, OSError) as exc:
        raise click.ClickException(f"database: {exc}") from exc


def _write(settings: Settings, flow_factory: Callable[[], Flow[T]]) -> T:
    async def work(store: Any) -> T:
        return await store.write(flow_factory())  # type: ignore[no-any-return]
    try:
        return _run(settings, work)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def _now_ms() -> int:
    return int(time.time() * 1000)


database_option = click.option(
    "--database", "database_url", default=None, metavar="URL",
    help=f"Database URL [env: {env_name('database_url')}; default sqlite:///crmwatch.db].")


@click.group(invoke_without_command=True)
@click.version_option(package_name="crmwatch")
@click.pass_context
def main(ctx: click.Context) -> None:
    """crmwatch: a self-hosted, Zoho CRM wire-compatible server. Without a command: serve."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@main.command()
@click.option("--host", default=None, help=f"Listen address [env: {env_name('host')}; "
              "default 127.0.0.1].")
@click.option("--port", type=int, default=None, help=f"Port [env: {env_name('port')}; "
              "default 8000].")
@database_option
@click.option("--base-url", default=None, help=f"Public base URL [env: {env_name('base_url')}].")
@click.option("--ssl-certfile", default=None, help=f"TLS certificate [env: "
              f"{env_name('ssl_certfile')}].")
@click.option("--ssl-keyfile", default=None, help=f"TLS key [env: {env_name('ssl_keyfile')}].")
@click.option("--no-workers", "no_workers", is_flag=True, default=None,
              help=f"API only: no dispatcher or delivery workers in this process (PostgreSQL, "
                   f"beside `crmwatch worker`) [env: {env_name('workers')}=false].")
@click.option("--check", is_flag=True, help="Only check the database and exit 0 if healthy.")
def serve(host: str | None = None, port: int | None = None, database_url: str | None = None,
          base_url: str | None = None, ssl_certfile: str | None = None,
          ssl_keyfile: str | None = None, no_workers: bool | None = None,
          check: bool = False) -> None:
    """Run the API server (creates and migrates the database on first start)."""
    settings = _settings(host=host, port=port, database_url=database_url, base_url=base_url,
                         ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                         workers=False if no_workers else None)
    if not settings.workers and not settings.database_url.startswith("postgres"):
        click.echo("warning: without workers nothing delivers notifications; with SQLite, "
                   "run the workers in `serve`", err=True)
    if check:
        from crmwatch.store import tenants

        orgs = _run(settings, lambda s: s.read(tenants.list_orgs()))
        click.echo(f"database ok: {len(orgs)} org(s)")
        return
    import uvicorn

    from crmwatch.api.app import create_app
    from crmwatch.api.server import uvicorn_config

    _ensure_first_org(settings)
    if not settings.database_url.startswith("postgres"):
        from crmwatch.store import sqlite

        path = sqlite.path_from_url(settings.database_url)
        mode = sqlite.open_to_others(path)
        if mode is not None:
            click.echo(f"warning: {path} is readable or writable by other users (mode "
                       f"{mode:04o}); it holds signing secrets and the token key: chmod 600 "
                       f"it (and its -wal and -shm files)", err=True)
    app = create_app(settings, _open(settings))
    base = settings.public_base_url
    click.echo(f"crmwatch serving {base} (database {redact(settings.database_url)})")
    click.echo(f"  token URL : {base}/oauth/v2/token")
    click.echo(f"  API       : {base}/crm/v8/...   change feed: {base}/crmwatch/v1/changes")
    click.echo("  credentials: crmwatch client create   (prints client_id, client_secret, "
               "refresh_token)")
    server = uvicorn.Server(uvicorn_config(settings, app))
    server.run()
    if not server.started:
        sys.exit(3)  # as uvicorn.run: the server could not start (port taken, bad TLS files)


@main.command()
@database_option
@click.option("--base-url", default=None, help=f"Public base URL of the API, used in "
              f"notification bodies [env: {env_name('base_url')}].")
def worker(database_url: str | None, base_url: str | None) -> None:
    """Dispatcher, delivery workers and bulk-read runner only (PostgreSQL)."""
    settings = _settings(database_url=database_url, base_url=base_url)
    if not settings.database_url.startswith(("postgres://", "postgresql://")):
        raise click.UsageError("`crmwatch worker` needs PostgreSQL; with SQLite, `crmwatch "
                               "serve` runs the workers itself")
    import signal

    from crmwatch.bulk.runner import BulkRunner
    from crmwatch.delivery.worker import DeliveryService

    async def work(store: Any) -> None:
        service = DeliveryService(settings, store)
        await service.start()
        runner = BulkRunner(settings, store)
        await runner.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        click.echo(f"crmwatch worker {service.owner} delivering for "
                   f"{redact(settings.database_url)}")
        await stop.wait()
        await runner.stop()
        await service.stop()

    _run(settings, work, sequencer=True)


DEFAULT_ORG = "default"
"""The org `serve` creates on a database without orgs, and the one commands use without --org."""

org_option = click.option(
    "--org", "org_name", default=None, metavar="NAME",
    help=f"Org name; without --org: the org '{DEFAULT_ORG}' (created if the database has no "
         f"org yet, as `serve` does), else the only org.")


def _create_default_org() -> Flow[Org]:
    from crmwatch.catalog import standard_modules
    from crmwatch.store import tenants

    return (yield from tenants.create_org(DEFAULT_ORG, "UTC", standard_modules(), _now_ms()))


def _command_org(org_name: str | None) -> Flow[Org]:
    """The org an org-scoped command works on (one rule for every command): the one named by
    --org; without it `default`, else the only org; a database with no org (never served)
    gets `default`, as `serve` would make it. Several orgs and none named `default`: refused."""
    from crmwatch.store import tenants

    if org_name is not None:
        return (yield from tenants.find_org(org_name))
    orgs = yield from tenants.list_orgs()
    named = [o for o in orgs if o.name == DEFAULT_ORG]
    if named or len(orgs) == 1:
        return (named or orgs)[0]
    if not orgs:
        return (yield from _create_default_org())
    raise LookupError(f"name an org (--org): there are {len(orgs)} and none is called "
                      f"{DEFAULT_ORG!r}")


def _ensure_first_org(settings: Settings) -> None:
    """A fresh database gets one org, so that `client create` works at once."""
    from crmwatch.store import tenants

    orgs = _run(settings, lambda s: s.read(tenants.list_orgs()))
    if not orgs:
        _write(settings, _create_default_org)
        click.echo(f"created org '{DEFAULT_ORG}' (time zone UTC)")


@main.group()
def org() -> None:
    """Tenants: each org has its own users, modules and records."""


@org.command("create")
@click.argument("name")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--email", default=None, help="The admin user's e-mail.")
@database_option
def org_create(name: str, timezone: str, email: str | None, database_url: str | None) -> None:
    """Create an org with Zoho's standard modules."""
    from crmwatch.catalog import standard_modules
    from crmwatch.domain import clock
    from crmwatch.store import tenants

    try:
        clock.zone(timezone)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timezone") from exc
    settings = _settings(database_url=database_url)
    created = _write(settings, lambda: tenants.create_org(name, timezone, standard_modules(),
                                                          _now_ms(), email))
    click.echo(f"org {created.name}: id {created.id}, time zone {created.timezone}")


@org.command("secret")
@org_option
@click.option("--rotate", is_flag=True, help="Make a new secret; the old one keeps signing "
              "for the grace period (CRMWATCH_SECRET_GRACE_SECONDS).")
@database_option
def org_secret(org_name: str | None, rotate: bool, database_url: str | None) -> None:
    """Show (or rotate) the org's webhook signing secret (Standard Webhooks, whsec_...)."""
    from crmwatch.delivery import signing
    from crmwatch.store import deliveries

    settings = _settings(database_url=database_url)

    def flow() -> Flow[list[str]]:
        found = yield from _command_org(org_name)
        if rotate:
            return (yield from deliveries.rotate_secret(
                found.id, _now_ms(), int(settings.secret_grace_seconds * 1000),
                signing.new_secret()))
        return (yield from deliveries.signing_secrets(found.id, _now_ms(),
                                                      signing.new_secret()))

    for secret in _write(settings, flow):
        click.echo(secret)


@org.command("list")
@database_option
def org_list(database_url: str | None) -> None:
    """List the orgs."""
    from crmwatch.store import tenants

    for o in _run(_settings(database_url=database_url), lambda s: s.read(tenants.list_orgs())):
        click.echo(f"{o.id}  {o.name}  {o.timezone}")


@main.group()
def client() -> None:
    """OAuth clients (Zoho self clients) and grant codes."""


@client.command("create")
@org_option
@click.option("--scopes", default=None, help="Comma-separated scopes; default: all.")
@click.option("--name", default="self client", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@database_option
def client_create(org_name: str | None, scopes: str | None, name: str, as_json: bool,
                  database_url: str | None) -> None:
    """Create a self client: prints client_id, client_secret and refresh_token."""
    from crmwatch.domain import scopes as sc
    from crmwatch.store import tenants

    parsed = _scopes_param(scopes or ",".join(sc.DEFAULT_SCOPES))
    settings = _settings(database_url=database_url)

    def flow() -> Flow[tenants.Credentials]:
        found = yield from _command_org(org_name)
        return (yield from tenants.create_client(found, sc.render(parsed), name, _now_ms()))

    creds = _write(settings, flow)
    out = {"client_id": creds.client_id, "client_secret": creds.client_secret,
           "refresh_token": creds.refresh_token, "org_id": str(creds.org.id),
           "org": creds.org.name, "user_email": creds.user.email, "scopes": creds.scopes,
           "token_url": settings.public_base_url + "/oauth/v2/token",
           "api_domain": settings.public_base_url}
    if as_json:
        click.echo(orjson.dumps(out).decode())
    else:
        for k, v in out.items():
            click.echo(f"{k:14} {v}")


def _scopes_param(text: str) -> tuple[Scope, ...]:
    """`--scopes` parsed, or a usage error naming the option."""
    from crmwatch.domain import scopes as sc

    try:
        return sc.parse_scopes(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scopes") from exc


@client.command("grant")
@click.argument("client_id")
@click.option("--scopes", default=None, help="Scopes of the grant; default: the client's.")
@database_option
def client_grant(client_id: str, scopes: str | None, database_url: str | None) -> None:
    """Mint a one-time grant code (valid 10 minutes) for the authorization_code flow."""
    from crmwatch.domain import scopes as sc
    from crmwatch.store import tenants

    rendered = sc.render(_scopes_param(scopes)) if scopes else None
    code = _write(_settings(database_url=database_url),
                  lambda: tenants.create_grant(client_id, rendered, _now_ms()))
    click.echo(code)


@main.group()
def schema() -> None:
    """Custom modules, fields and subforms."""


@schema.command("apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@org_option
@database_option
def schema_apply(path: str, org_name: str | None, database_url: str | None) -> None:
    """Add or change modules and fields from a YAML or JSON schema file (docs/schema.md)."""
    from crmwatch.catalog import read_document
    from crmwatch.domain.modules import SchemaError, check_references, load_modules, merge_modules
    from crmwatch.store import tenants

    try:
        new = load_modules(read_document(path), custom=True)
    except (SchemaError, OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: {exc}") from exc

    def flow() -> Flow[list[str]]:
        found = yield from _command_org(org_name)
        current, _ = yield from tenants.load_catalog(found.id)
        merged = merge_modules(current, new)
        check_references(merged)
        saved = yield from tenants.save_catalog(found, merged, _now_ms())
        return [m.api_name for m in saved]

    try:
        names = _write(_settings(database_url=database_url), flow)
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"applied {path}: {len(names)} modules")


@main.command()
@click.option("--module", "module_name", required=True)
@click.option("--count", type=click.IntRange(1, 10_000_000), default=100, show_default=True)
@org_option
@click.option("--seed", "random_seed", type=int, default=None, help="Seed for repeatable data.")
@database_option
def seed(module_name: str, count: int, org_name: str | None, random_seed: int | None,
         database_url: str | None) -> None:
    """Fill a module with realistic fake records (journal events included)."""
    from crmwatch import seed as seeding
    from crmwatch.domain import records as rec
    from crmwatch.store import records as store_records
    from crmwatch.store import tenants

    settings = _settings(database_url=database_url)

    async def work(store: Any) -> int:
        found = await store.write(_command_org(org_name))
        modules, _ = await store.read(tenants.load_catalog(found.id))
        by_name = {m.api_name: m for m in modules}
        module = by_name.get(module_name)
        if module is None or module.is_subform:
            raise click.BadParameter(f"no module {module_name!r}", param_hint="--module")
        users = await store.read(tenants.list_users(found.id))
        written = 0
        gen = seeding.records(module, count, random_seed)
        with click.progressbar(length=count, label=f"seeding {module_name}",
                               file=sys.stderr) as bar:
            while written < count:
                chunk = [next(gen) for _ in range(min(100, count - written))]
                items: list[Any] = [rec.parse_input(module, raw, i, creating=True,
                                                    modules=by_name)
                                    for i, raw in enumerate(chunk)]
                ctx = store_records.Ctx(found, users[0], {u.id: u for u in users}, by_name,
                                        _now_ms(), store_records.new_batch())
                results = await store.write(store_records.write_records(
                    ctx, module, "insert", items))
                bad = [r for r in results if r["status"] != "success"]
                if bad:
                    raise click.ClickException(f"seeding failed: {bad[0]}")
                written += len(chunk)
                bar.update(len(chunk))
        return written

    try:
        n = _run(settings, work)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"seeded {n} {module_name}")


class _BulkProgress:
    """`bulk-read` progress on stderr: job states as lines, bytes as a bar on a terminal (a
    status line per download elsewhere); each page's summary on stdout."""

    def __init__(self) -> None:
        import contextlib

        self.tty = sys.stderr.isatty()
        self.bars = contextlib.ExitStack()
        self.bar: Any = None
        self.shown = 0
        self.inline = False

    def close(self) -> None:
        self.bars.close()
        self.bar = None
        if self.inline:
            click.echo(err=True)
            self.inline = False

    def state(self, job_id: str, state: str) -> None:
        self.close()
        click.echo(f"job {job_id}: {state}", err=True)

    def download(self, job_id: str, done: int, total: int | None) -> None:
        if done == 0:
            self.close()
            self.shown = 0
            label = f"downloading job {job_id}"
            if self.tty and total:
                self.bar = self.bars.enter_context(click.progressbar(
                    length=total, label=label, file=sys.stderr))
            else:
                click.echo(label + (f" ({total:,} bytes)" if total else ""), err=True)
        elif self.bar is not None:
            self.bar.update(done - self.shown)
            self.shown = done
        elif self.tty:
            click.echo(f"\r{done:,} bytes", nl=False, err=True)
            self.inline = True

    def rate_limited(self, seconds: float) -> None:
        self.close()
        click.echo(f"download refused with 429 (rate limit): retrying in {seconds:g} s",
                   err=True)

    def page_done(self, page: Page) -> None:
        self.close()
        click.echo(f"job {page.job_id}: page {page.page}, {page.count} records, "
                   f"{page.size:,} bytes -> {page.path}")


@main.command("bulk-read")
@click.option("--module", "module_name", required=True, help="Module API name, e.g. Leads.")
@click.option("--fields", default=None, help="Comma-separated field API names; default: all.")
@click.option("--criteria", default=None, help="A Zoho bulk criteria as JSON, or one "
              "condition as Field:comparator:value (in/between: comma-separated values).")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True,
              help="Page of 200,000 records (the first one with --all-pages).")
@click.option("--all-pages", is_flag=True, help="Follow more_records: the next pages go to "
              "FILE-2.zip, FILE-3.zip, ...")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The zip file to write (the server's zip, one CSV inside).")
@server_options
@click.option("--poll-seconds", type=click.FloatRange(min=0.01), default=5.0,
              show_default=True, help="Longest wait between status polls.")
@click.option("--timeout", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="Seconds to wait for each job to finish.")
def bulk_read(module_name: str, fields: str | None, criteria: str | None, page: int,
              all_pages: bool, out: Path, api_version: str, api_url: str | None,
              accounts_url: str | None, client_id: str, client_secret: str,
              refresh_token: str, poll_seconds: float, timeout: float) -> None:
    """Export a module with the Bulk Read API of crmwatch or Zoho CRM into zipped CSV."""
    from crmwatch.client import bulkread
    from crmwatch.client.zoho import ClientError

    check_server(api_version, api_url, accounts_url)
    parsed = None
    if criteria is not None:
        try:
            parsed = bulkread.parse_criteria(criteria)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--criteria") from exc
    names = [f.strip() for f in (fields or "").split(",") if f.strip()]
    query = bulkread.build_query(module_name, names, parsed, page)
    progress = _BulkProgress()

    async def work() -> list[Page]:
        async with make_client(api_url, accounts_url, client_id, client_secret,
                               refresh_token) as zoho:
            return await bulkread.export(zoho, query, out, version=api_version,
                                         all_pages=all_pages, poll_seconds=poll_seconds,
                                         timeout=timeout, progress=progress)

    try:
        pages = asyncio.run(work())
    except (ClientError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        progress.close()
    last = pages[-1]
    if len(pages) > 1:
        click.echo(f"{sum(p.count for p in pages)} records in {len(pages)} files")
    if last.more_records:
        click.echo(f"more records after page {last.page}: run again with --page "
                   f"{last.page + 1}, or with --all-pages", err=True)


from crmwatch.sync.cli import sync as _sync  # noqa: E402

main.add_command(_sync)

# `sync verify` imports `sync.cli` (its options), so it joins the group here, not there.
from crmwatch.sync.verify import command as _verify  # noqa: E402

_sync.add_command(_verify)
