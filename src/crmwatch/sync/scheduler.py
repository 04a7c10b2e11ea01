"""`crmwatch sync run`: subscribe, snapshot, stream, renew, catch up (docs/sync.md).

Tasks of one run:
- the receiver (receiver.py) queues notifications in `_inbox`;
- the applier is the only task that writes records read from the source: it drains the
  inbox (read by id, apply, drop the inbox rows in one transaction) and runs the catch-ups
  (at start, after a gap or a lapse, after each snapshot page, every `catchup_seconds`), one
  thing at a time, so that an older read never overwrites a newer one;
- the snapshot runs Bulk Read pages beside it (its rows only win when newer, see
  reconcile.csv_verdict);
- the renewer enables the same channel again before it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import orjson

from crmwatch.client.zoho import ApiError, ClientError, ZohoClient
from crmwatch.sync import cells, reconcile, snapshot
from crmwatch.sync.mirror import Mirror, now_text
from crmwatch.sync.receiver import Notification, Receiver

log = logging.getLogger("crmwatch.sync")


@dataclass
class Options:
    modules: list[str]
    listen_host: str = "127.0.0.1"
    listen_port: int = 8765
    notify_url: str | None = None
    plain_zoho: bool = False
    version: str = "v8"
    channel_seconds: float | None = None
    """Requested channel lifetime; default: the version's maximum (a week from v4, a day
    before), less ten minutes for clock skew."""
    catchup_seconds: float = 300.0
    margin_seconds: float = 120.0
    gap_grace_seconds: float = 2.0
    signing_secret: str | None = None
    poll_seconds: float = 2.0
    batch: int = snapshot.BATCH
    workdir: Path | None = None


class PortBusy(Exception):
    """The --listen address is taken."""


def version_max_lifetime(version: str) -> float:
    number = float(version.lstrip("v") or 8)
    return 86400.0 if number < 4 else 7 * 86400.0


def _epoch(text: str | None) -> float | None:
    moment = reconcile.instant(text)
    return None if moment is None else moment.timestamp()


@dataclass
class _Flags:
    catchup: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Sync:
    """One run of the sync (see the module docstring)."""

    def __init__(self, client: ZohoClient, mirror: Mirror, options: Options,
                 progress: snapshot.SnapshotProgress) -> None:
        self.client = client
        self.mirror = mirror
        self.options = options
        self.progress = progress
        self.flags = _Flags()
        self.extras = False
        self.tracker = reconcile.SeqTracker()
        self.channel_id = ""
        self.token = ""
        self.expiry: float | None = None
        self.enabled_at: float | None = None
        self.receiver: Receiver | None = None
        self.users: dict[str, cells.User] = {}
        self.ready = asyncio.Event()

    # -- setup -------------------------------------------------------------------------------

    async def prepare(self) -> None:
        state = await self.mirror.get_state()
        self.extras = (not self.options.plain_zoho) and await self.client.has_change_feed()
        self.channel_id = state.get("channel_id") or str(10**17 + secrets.randbelow(9 * 10**17))
        self.token = state.get("channel_token") or secrets.token_urlsafe(30)[:40]
        self.expiry = _epoch(state.get("channel_expiry"))
        await self.mirror.set_state({"channel_id": self.channel_id, "channel_token": self.token,
                                     "mode": "crmwatch" if self.extras else "zoho",
                                     "modules": ",".join(self.options.modules)})
        for module in self.options.modules:
            await self.refresh_fields(module)
        self.users = await self._users()
        seq = (await self.mirror.counters()).get("channel_seq", 0)
        self.tracker = reconcile.restart_tracker(seq)
        if self.extras and "feed_seq" not in state:
            await self.mirror.set_state({"feed_seq": str(await snapshot.feed_head(self.client))})

    async def _users(self) -> dict[str, cells.User]:
        try:
            users = await self.client.users(version=self.options.version)
        except ClientError as exc:
            log.warning("user list not readable (%s): owner lookups are read by id", exc)
            return {}
        return {str(u["id"]): cells.User(str(u["full_name"]),
                                         None if u.get("email") is None else str(u["email"]))
                for u in users if u.get("id") is not None and u.get("full_name") is not None}

    async def refresh_fields(self, module: str) -> list[str]:
        meta = await self.client.fields(module, version=self.options.version)
        added = await self.mirror.ensure_module(module, cells.specs_from_metadata(meta))
        if added:
            log.info("%s: new fields %s", module, ", ".join(added))
        return added

    def notify_url(self) -> str:
        return self.options.notify_url or (
            f"http://{self.options.listen_host}:{self.options.listen_port}/notify")

    async def start_receiver(self) -> None:
        self.receiver = Receiver(self.mirror, channel_id=self.channel_id, token=self.token,
                                 modules=self.options.modules,
                                 secret=self.options.signing_secret, on_queued=self._queued)
        try:
            await self.receiver.start(self.options.listen_host, self.options.listen_port)
        except OSError as exc:
            raise PortBusy(f"cannot listen on {self.options.listen_host}:"
                           f"{self.options.listen_port}: {exc.strerror or exc}") from exc

    def _queued(self, note: Notification) -> None:
        if self.extras and note.channel_seq is not None and note.previous_seq is not None:
            self.tracker = self.tracker.add(note.channel_seq, note.previous_seq, time.monotonic())
        self.flags.wake.set()

    # -- the channel -------------------------------------------------------------------------

    async def enable(self) -> None:
        """Enable (again) the mirror's channel with a new expiry; never delete it."""
        lifetime = self.options.channel_seconds or (
            version_max_lifetime(self.options.version) - 600)
        now = datetime.now(UTC)
        requested = (now + timedelta(seconds=lifetime)).replace(microsecond=0)
        events = [f"{m}.{op}" for m in self.options.modules for op in ("create", "edit", "delete")]
        was_lapsed = reconcile.lapsed(self.expiry, time.time())
        details = await self.client.enable_watch({
            "channel_id": self.channel_id, "events": events, "notify_url": self.notify_url(),
            "token": self.token, "channel_expiry": requested.isoformat(),
            "return_affected_field_values": True}, version=self.options.version)
        answered = [_epoch(e.get("channel_expiry")) for e in details.get("events") or []
                    if isinstance(e, dict)]
        known = [a for a in answered if a is not None]
        self.expiry = min(known) if known else requested.timestamp()
        self.enabled_at = time.time()
        await self.mirror.set_state({
            "channel_expiry": datetime.fromtimestamp(self.expiry, UTC).isoformat(),
            "channel_enabled_at": now_text()})
        if was_lapsed:
            self.flags.catchup.set()

    async def renewer(self, stop: asyncio.Event) -> None:
        pause = 1.0
        while not stop.is_set():
            assert self.expiry is not None and self.enabled_at is not None
            wait = reconcile.renew_at(self.enabled_at, self.expiry) - time.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(wait, 0.0))
            if stop.is_set():
                return
            try:
                await self.enable()
                pause = 1.0
            except ClientError as exc:
                await self.error(f"renewing channel {self.channel_id}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, 60.0)
                self.enabled_at = time.time() - 1  # retry soon, whatever renew_at says

    # -- applying ----------------------------------------------------------------------------

    async def error(self, message: str) -> None:
        log.error("%s", message)
        with contextlib.suppress(Exception):
            await self.mirror.set_state({"last_error": f"{now_text()} {message}"})

    async def apply_ids(self, module: str, ids: Sequence[str], *, inbox: Sequence[int] = (),
                        state: dict[str, str] | None = None) -> None:
        """Read `ids` from the source and write what it says: records, or deletions."""
        unique = list(dict.fromkeys(ids))
        found = await self.client.get_records(module, unique, version=self.options.version)
        records, missing = reconcile.fetched_split(unique, found)
        specs = self.mirror.known_fields(module) or {
            s.name for s in await self.mirror.specs(module)}
        if any(key not in specs for r in records for key in r):
            await self.refresh_fields(module)
        await self.mirror.apply(module, records, missing, None, inbox=inbox, state=state)

    async def drain(self) -> int:
        """Apply up to a batch of queued notifications; how many inbox rows were applied."""
        items = await self.mirror.take_inbox(500)
        if not items:
            return 0
        by_module: dict[str, list[str]] = defaultdict(list)
        ns: dict[str, list[int]] = defaultdict(list)
        for item in items:
            by_module[item.module].extend(item.ids)
            ns[item.module].append(item.n)
        for module, ids in by_module.items():
            if module not in self.options.modules:
                await self.mirror.drop_inbox(ns[module])
                continue
            await self.apply_ids(module, ids, inbox=ns[module])
        return len(items)

    async def catch_up(self) -> None:
        if self.extras:
            await self._catch_up_feed()
        else:
            for module in self.options.modules:
                await self._catch_up_zoho(module)
        self.tracker = self.tracker.closed()

    async def _catch_up_feed(self) -> None:
        """Everything the change feed lists after the stored seq, read by id."""
        since = int((await self.mirror.get_state()).get("feed_seq", "0"))
        mirrored = set(self.options.modules)
        while True:
            doc = await self.client.changes(since, 1000)
            info = doc["info"]
            by_module: dict[str, list[str]] = defaultdict(list)
            for change in doc["changes"]:
                if change.get("module") in mirrored:
                    by_module[str(change["module"])].append(str(change["id"]))
            nxt = int(info.get("next_since", since))
            modules = list(by_module)
            for i, module in enumerate(modules):
                last = i == len(modules) - 1
                await self.apply_ids(module, by_module[module],
                                     state={"feed_seq": str(nxt)} if last else None)
            if not modules and nxt != since:
                await self.mirror.set_state({"feed_seq": str(nxt)})
            since = nxt
            if not doc["changes"] or not info.get("more_records"):
                await self.mirror.set_state({"feed_applied_at": now_text()})
                return

    def _server_now(self) -> datetime:
        date = self.client.last_date
        if date:
            with contextlib.suppress(TypeError, ValueError):
                return parsedate_to_datetime(date).astimezone(UTC)
        return datetime.now(UTC)

    async def _catch_up_zoho(self, module: str) -> None:
        """Records modified since the last catch-up (less a margin), then deletions since.

        The listing runs in windows by Modified_Time (reconcile.listing_after), so neither
        Zoho's page-token limit nor edits and deletions during the listing hide a record."""
        st = await self.mirror.module_state(module)
        last = reconcile.instant(st.get("last_catchup") or st.get("snapshot_started"))
        if last is None:
            return  # its snapshot has not begun: the export will read every record
        since = reconcile.catchup_since(last, timedelta(seconds=self.options.margin_seconds))
        header = reconcile.zoho_datetime(since) if since is not None else None
        started: datetime | None = None
        for _attempt in range(3):
            started = None
            followed = False  # a page token was followed: an offset listing, see below
            step: reconcile.Listing | reconcile.Stuck | None = reconcile.Listing(header)
            while isinstance(step, reconcile.Listing):
                listing = step
                try:
                    data, info = await self.client.list_records(
                        module, page_token=listing.page_token, modified_since=listing.since,
                        sort_by="Modified_Time", sort_order="asc",
                        version=self.options.version)
                except ApiError as exc:
                    if exc.code != "PAGINATION_LIMIT_EXCEEDED" or not listing.page_token:
                        raise
                    step = reconcile.listing_stuck(listing)
                else:
                    if started is None:
                        started = self._server_now()
                    if data:
                        records, _ = reconcile.fetched_split([], data)
                        await self.mirror.apply(module, records, [], None)
                    token = info.get("next_page_token")
                    step = reconcile.listing_after(listing, data, bool(info.get("more_records")),
                                                   str(token) if token else None)
                    followed = followed or (isinstance(step, reconcile.Listing)
                                            and step.page_token is not None)
                if isinstance(step, reconcile.Stuck):
                    await self.error(
                        f"{module}: more records have Modified_Time {step.at} than a listing "
                        f"pages through; the catch-up goes on at {step.resume} (sync verify "
                        f"--repair mends what it missed)")
                    step = reconcile.Listing(step.resume)
            if started is None:
                started = self._server_now()
            concurrent_deletes = await self._deleted_since(module, since, started)
            # a deletion only shifts a listing that followed page tokens (one second with
            # more records than a page): then list again
            if not (concurrent_deletes and followed):
                break
        assert started is not None
        await self.mirror.set_module_state(module, last_catchup=started.isoformat())

    async def _deleted_since(self, module: str, since: datetime | None,
                             listing_started: datetime) -> bool:
        """Apply `/deleted` down to `since`; whether a deletion happened during the listing
        (an offset listing may then have skipped a record: list again)."""
        page = 1
        during = False
        while True:
            data, info = await self.client.deleted_records(module, page=page,
                                                           version=self.options.version)
            if not data:
                return during
            newer = [d for d in data if since is None
                     or (reconcile.instant(str(d.get("deleted_time") or "")) or since) >= since]
            by_time: dict[str | None, list[str]] = defaultdict(list)
            for d in newer:
                by_time[d.get("deleted_time")].append(str(d.get("id")))
                moment = reconcile.instant(str(d.get("deleted_time") or ""))
                if moment is not None and moment >= listing_started - timedelta(seconds=1):
                    during = True
            for when, ids in by_time.items():
                await self.mirror.apply(module, [], ids, when)
            if reconcile.deleted_page_done(data, since) or not info.get("more_records"):
                return during
            page += 1

    async def applier(self, stop: asyncio.Event) -> None:
        last_catchup = time.monotonic()
        pause = 0.5
        while not stop.is_set():
            try:
                now = time.monotonic()
                if (self.flags.catchup.is_set() or self.tracker.gap(
                        now, self.options.gap_grace_seconds)
                        or now - last_catchup > self.options.catchup_seconds):
                    self.flags.catchup.clear()
                    await self._phase("catching up")
                    await self.catch_up()
                    last_catchup = time.monotonic()
                    await self._phase(None)
                    self.ready.set()
                if await self.drain():
                    pause = 0.5
                    continue
                self.flags.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.flags.wake.wait(), 0.5)
            except ClientError as exc:
                await self.error(str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, 30.0)
                self.flags.catchup.set()

    async def _phase(self, phase: str | None) -> None:
        for module in self.options.modules:
            st = await self.mirror.module_state(module)
            if phase is None:
                new = "streaming" if st.get("snapshot_done") else st.get("phase")
            else:
                new = phase if st.get("snapshot_done") else st.get("phase")
            if new != st.get("phase"):
                await self.mirror.set_module_state(module, phase=new)

    # -- snapshot ----------------------------------------------------------------------------

    async def snapshot_all(self) -> None:
        for module in self.options.modules:
            st = await self.mirror.module_state(module)
            if st.get("snapshot_done"):
                continue
            raw_next = st.get("snapshot_next")
            query = orjson.loads(raw_next) if raw_next else snapshot.first_query(module)
            if not st.get("snapshot_started"):
                # the server's clock, for the Zoho catch-up after the snapshot
                await self.client.fields(module, version=self.options.version)
                await self.mirror.set_module_state(
                    module, snapshot_started=self._server_now().isoformat())
            await self.mirror.set_module_state(module, phase="snapshot")
            while query is not None:
                page = await snapshot.run_page(
                    self.client, self.mirror, module, query, version=self.options.version,
                    extras=self.extras, users=self.users, progress=self.progress,
                    poll_seconds=self.options.poll_seconds, batch=self.options.batch,
                    workdir=self.options.workdir)
                query = page.next_query
                self.flags.catchup.set()
                self.flags.wake.set()

    async def _snapshot_until_done(self, stop: asyncio.Event) -> None:
        pause = 1.0
        while True:
            try:
                await self.snapshot_all()
                return
            except ClientError as exc:
                await self.error(f"snapshot: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                if stop.is_set():
                    return
                pause = min(pause * 2, 60.0)

    # -- the whole run -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.prepare()
        await self.start_receiver()
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.enable()
            self.flags.catchup.set()
            tasks.append(asyncio.create_task(self.applier(stop)))
            tasks.append(asyncio.create_task(self.renewer(stop)))
            snap = asyncio.create_task(self._snapshot_until_done(stop))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({snap, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if snap in done:
                snap.result()
                await self._phase(None)
                await stop.wait()
            else:
                snap.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await snap
            stopper.cancel()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if self.receiver is not None:
                await self.receiver.stop()
