"""`crmwatch sync run` and `crmwatch sync status` (docs/sync.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

import click
import orjson

from crmwatch.client.options import check_server, make_client, server_options

DEFAULT_DATABASE = "sqlite:///crmwatch-mirror.db"
database_option = click.option(
    "--database", "database_url", envvar="CRMWATCH_SYNC_DATABASE", default=DEFAULT_DATABASE,
    show_default=True, help="The mirror: sqlite:///file.db or postgresql://... "
    "[env: CRMWATCH_SYNC_DATABASE].")


@click.group()
def sync() -> None:
    """Keep a local database an exact, live mirror of CRM modules."""


class _Progress:
    """Snapshot progress on stderr: a bar with records, rate and ETA on a terminal; a line
    per page elsewhere."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = 0.0
        self.inline = False

    def snapshot(self, module: str, done: int, total: int | None) -> None:
        if done == 0:
            self.started = time.monotonic()
            click.echo(f"{module}: snapshot page of {total if total is not None else '?'} "
                       "records", err=True)
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        if self.tty:
            width = 30
            shown = f"{done:,}"
            bar = ""
            eta = ""
            if total:
                filled = int(width * min(done / total, 1.0))
                bar = "[" + "#" * filled + "-" * (width - filled) + "] "
                shown += f"/{total:,}"
                eta = f", ETA {max(total - done, 0) / rate:,.0f} s" if rate else ""
            click.echo(f"\r{module}: {bar}{shown} records, {rate:,.0f}/s{eta}   ", nl=False,
                       err=True)
            self.inline = True
            if total is not None and done >= total:
                click.echo(err=True)
                self.inline = False
        elif total is not None and done >= total:
            click.echo(f"{module}: {done:,} records applied ({rate:,.0f}/s)", err=True)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter("expected HOST:PORT", param_hint="--listen")
    return host.strip("[]") or "127.0.0.1", int(port)


@sync.command("run")
@click.option("--module", "modules", multiple=True, required=True,
              help="Module API name to mirror (repeat for more).")
@database_option
@click.option("--listen", default="127.0.0.1:8765", show_default=True,
              help="HOST:PORT of the webhook receiver.")
@click.option("--notify-url", default=None, help="URL the CRM calls; default "
              "http://{listen}/notify.")
@click.option("--plain-zoho", is_flag=True, help="Use nothing but Zoho's API (no change feed, "
              "channel sequence or signatures), even against crmwatch.")
@click.option("--signing-secret", envvar="CRMWATCH_SYNC_SIGNING_SECRET", default=None,
              help="The org's whsec_... secret: take only notifications signed with it "
                   "[env: CRMWATCH_SYNC_SIGNING_SECRET].")
@click.option("--channel-seconds", type=click.FloatRange(min=60), default=None,
              help="Channel lifetime to ask for; default: the API version's maximum.")
@click.option("--catchup-seconds", type=click.FloatRange(min=1), default=300.0,
              show_default=True, help="Catch up this often as a safety net.")
@click.option("--margin-seconds", type=click.FloatRange(min=0), default=120.0,
              show_default=True, help="Zoho catch-up: start this long before the last one.")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True,
              help="API calls in flight at once.")
@click.option("--poll-seconds", type=click.FloatRange(min=0.01), default=2.0,
              show_default=True, help="Longest wait between Bulk Read status polls.")
@server_options
def run(modules: tuple[str, ...], database_url: str, listen: str, notify_url: str | None,
        plain_zoho: bool, signing_secret: str | None, channel_seconds: float | None,
        catchup_seconds: float, margin_seconds: float, concurrency: int, poll_seconds: float,
        api_version: str, api_url: str | None, accounts_url: str | None, client_id: str,
        client_secret: str, refresh_token: str) -> None:
    """Mirror modules into a database until SIGINT/SIGTERM."""
    from crmwatch.client.zoho import ClientError
    from crmwatch.sync.mirror import MirrorError, open_mirror
    from crmwatch.sync.scheduler import Options, PortBusy, Sync

    check_server(api_version, api_url, accounts_url)
    host, port = _listen(listen)
    if signing_secret:
        from crmwatch.sync.signature import key_of
        try:
            key_of(signing_secret)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--signing-secret") from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    options = Options(list(dict.fromkeys(modules)), host, port, notify_url, plain_zoho,
                      api_version, channel_seconds, catchup_seconds, margin_seconds,
                      signing_secret=signing_secret, poll_seconds=poll_seconds)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        mirror = await open_mirror(database_url)
        try:
            async with make_client(api_url, accounts_url, client_id, client_secret,
                                   refresh_token, concurrency=concurrency) as client:
                job = Sync(client, mirror, options, _Progress())
                runner = asyncio.create_task(job.run(stop))
                waiter = asyncio.create_task(stop.wait())
                await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if not runner.done():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(runner, 8)
                else:
                    waiter.cancel()
                    runner.result()
        finally:
            await mirror.close()

    try:
        asyncio.run(main())
    except PortBusy as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (ClientError, MirrorError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


async def status_doc(database_url: str) -> dict[str, Any]:
    """The mirror's state, per module (what `sync status --json` prints)."""
    from crmwatch.sync.mirror import open_mirror

    mirror = await open_mirror(database_url)
    try:
        state = await mirror.get_state()
        counters = await mirror.counters()
        inbox = await mirror.take_inbox(1)
        queued = await mirror.inbox_size()
        oldest = inbox[0].received_at if inbox else None
        lag = None
        if oldest:
            lag = max(0.0, (datetime.now(UTC) - datetime.fromisoformat(oldest)).total_seconds())
        modules = []
        for module in await mirror.mirrored_modules():
            st = await mirror.module_state(module)
            try:
                rows = await mirror.row_count(module)
            except Exception:
                rows = 0
            modules.append({
                "module": module, "rows": rows, "phase": st.get("phase"),
                "snapshot": {"done": bool(st.get("snapshot_done")),
                             "rows": st.get("snapshot_rows"), "exports": st.get("exports")},
                "last_applied": st.get("last_applied"), "last_catchup": st.get("last_catchup"),
            })
        return {
            "mode": state.get("mode"), "modules": modules,
            "channel": {"id": state.get("channel_id"), "expiry": state.get("channel_expiry"),
                        "last_seq": counters.get("channel_seq")},
            "feed_seq": int(state["feed_seq"]) if "feed_seq" in state else None,
            "notifications": {"received": counters.get("received", 0),
                              "rejected": counters.get("rejected", 0),
                              "rejected_by_reason": {k.removeprefix("rejected_"): v
                                                     for k, v in counters.items()
                                                     if k.startswith("rejected_")},
                              "queued": queued},
            "lag_seconds": lag, "last_error": state.get("last_error"),
        }
    finally:
        await mirror.close()


@sync.command("status")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(database_url: str, as_json: bool) -> None:
    """Per module: rows, last change applied, lag, channel, notifications, phase, errors."""
    from crmwatch.sync.mirror import MirrorError

    try:
        doc = asyncio.run(status_doc(database_url))
    except (MirrorError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(orjson.dumps(doc).decode())
        return
    ch = doc["channel"]
    n = doc["notifications"]
    click.echo(f"mode {doc['mode']}, channel {ch['id']} expires {ch['expiry']}, "
               f"change feed at {doc['feed_seq']}")
    click.echo(f"notifications: {n['received']} received, {n['rejected']} rejected, "
               f"{n['queued']} queued; lag {doc['lag_seconds'] or 0:.1f} s")
    for m in doc["modules"]:
        click.echo(f"{m['module']}: {m['rows']} rows, {m['phase']}, last applied "
                   f"{m['last_applied']}, exports {m['snapshot']['exports']}")
    if doc["last_error"]:
        click.echo(f"last error: {doc['last_error']}")
