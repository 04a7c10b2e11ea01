"""Delivery workers: the dispatcher loop and the sender loop of one process.

A process leases the channels it serves (`delivery_leases`). For each leased channel it holds
a window of owed deliveries in id order and starts one only when no earlier undelivered
delivery of the window shares a record id with it (per-record order), with at most the
channel's adaptive concurrency in flight (a slow receiver slows only itself). Outcomes are
written in small batches. A process that dies leaves its leases to lapse; whoever takes a
channel over sends what is still owed (at-least-once: a request in flight at the crash is
sent again, with the same notification id).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from crmwatch.config import Settings
from crmwatch.delivery import signing
from crmwatch.delivery.sender import Outcome, Sender
from crmwatch.domain import clock
from crmwatch.domain.channels import Channel
from crmwatch.domain.concurrency import Limiter
from crmwatch.domain.modules import Module
from crmwatch.domain.payloads import build_body
from crmwatch.domain.retry import RetrySchedule
from crmwatch.store import channels as store_channels
from crmwatch.store import deliveries as store_deliveries
from crmwatch.store import tenants
from crmwatch.store.deliveries import Owed, Result
from crmwatch.store.dispatch import behind, dispatch, org_ids

log = logging.getLogger(__name__)

WINDOW = 500
REFRESH_S = 0.25
RELOAD_S = 5.0


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ChannelState:
    org_id: int
    channel_id: str
    limiter: Limiter
    window: dict[int, Owed] = field(default_factory=dict)
    in_flight: dict[int, Owed] = field(default_factory=dict)
    loaded_to: int = 0
    channel: Channel | None = None
    channel_checked: float = 0.0


@dataclass
class OrgInfo:
    tz: ZoneInfo
    modules: dict[str, Module]
    secrets: list[str]
    checked: float


FLUSHED_MEMORY_S = 60.0
"""How long a written outcome is remembered against window reads that began earlier."""


def retry_schedule(settings: Settings) -> RetrySchedule:
    """The retry schedule the settings describe (webhooks and Bulk Read callbacks)."""
    return RetrySchedule(
        initial_ms=int(settings.retry_initial_seconds * 1000),
        max_delay_ms=int(settings.retry_max_delay_seconds * 1000),
        window_ms=int(settings.retry_window_seconds * 1000),
    )


class DeliveryService:
    """Runs dispatch and delivery for every org of a store until stopped."""

    def __init__(
        self, settings: Any, store: Any, *, sender: Sender | None = None, owner: str | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.sender = sender or Sender(settings)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.base_url: str = settings.public_base_url
        self.schedule = retry_schedule(settings)
        self._jitter = random.Random()
        """Its own generator: the process-wide one belongs to the application."""
        self.lease_ms = int(settings.delivery_lease_seconds * 1000)
        self.channels: dict[tuple[int, str], ChannelState] = {}
        self.orgs: dict[int, OrgInfo] = {}
        self._results: list[Result] = []
        self._refreshing: set[int] = set()
        self._unflushed: set[int] = set()
        """Deliveries settled in memory whose outcome is not written yet: a window reload
        must neither send them again nor trust their stale rows."""
        self._flushed: dict[int, float] = {}
        self._flushed_order: collections.deque[tuple[float, int]] = collections.deque()
        """When (monotonic) each recently written outcome was written: a window read that
        began before that write may still show the delivery as owed (PostgreSQL reads run
        beside writes), so its row is not taken back."""

        self._wake_dispatch = asyncio.Event()
        self._wake_send = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()
        self._global = asyncio.Semaphore(settings.delivery_max_in_flight)
        self.stats = {"delivered": 0, "failed": 0, "dispatched": 0}

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.sender.start()
        loop = asyncio.get_running_loop()
        # A commit makes new events visible on SQLite; on PostgreSQL only their numbering
        # by the journal sequencer does.
        hooks = getattr(self.store, "on_sequenced", None)
        if hooks is None:
            hooks = getattr(self.store, "on_commit", None)
        if hooks is not None:
            hooks.append(lambda: loop.call_soon_threadsafe(self._wake_dispatch.set))
        self._tasks = [
            asyncio.create_task(self._guard(self._dispatch_loop), name="dispatch"),
            asyncio.create_task(self._guard(self._send_loop), name="deliver"),
            asyncio.create_task(self._guard(self._flush_loop), name="results"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in list(self._sends):
            t.cancel()
        await asyncio.gather(*self._tasks, *self._sends, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush()
        with contextlib.suppress(Exception):
            await self.store.write(store_deliveries.release(list(self.channels), self.owner))
        await self.sender.close()

    def wake(self) -> None:
        """New journal events or deliveries may be there (called after commits)."""
        self._wake_dispatch.set()

    async def _guard(self, loop_fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await loop_fn()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep delivering: log, pause, go on
                log.exception("delivery loop %s failed; restarting", loop_fn.__name__)
                await asyncio.sleep(1)

    # -- dispatch -----------------------------------------------------------------------------

    async def dispatch_once(self) -> int:
        """Fold every org's numbered journal events into deliveries; returns how many were
        made. Events not yet numbered (PostgreSQL) are left for a later round: the sequencer
        wakes this loop when it numbers some, so no round waits for it."""
        if getattr(self.store, "run_sequencer", True) is False:
            await self.store.sync_journal()  # nobody else numbers this store's journal
        made = 0
        for org_id in await self.store.read(org_ids()):
            if not await self.store.read(behind(org_id)):
                continue
            while True:
                done = await self.store.write(dispatch(org_id, _now_ms()))
                made += done.deliveries
                for cid in done.channels:
                    state = self.channels.get((org_id, cid))
                    if state is not None:
                        state.channel_checked = 0.0
                if not done.more:
                    break
        if made:
            self.stats["dispatched"] += made
            self._wake_send.set()
        return made

    async def _dispatch_loop(self) -> None:
        while True:
            self._wake_dispatch.clear()
            await self.dispatch_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake_dispatch.wait(), self.settings.dispatch_poll_seconds
                )

    # -- sending ------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        last_claim = 0.0
        last_reload = time.monotonic()
        while True:
            self._wake_send.clear()
            now = time.monotonic()
            if now - last_claim >= REFRESH_S or not self.channels:
                await self._claim()
                last_claim = now
            full = now - last_reload >= RELOAD_S
            if full:
                last_reload = now
            for state in list(self.channels.values()):
                await self._refill(state, full)
                self._start_runnable(state)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_send.wait(), self._next_wake())

    def _next_wake(self) -> float:
        now = _now_ms()
        due = [
            o.next_attempt_ms
            for s in self.channels.values()
            for o in s.window.values()
            if o.id not in s.in_flight
        ]
        if not due:
            return REFRESH_S
        return max(0.0, min(REFRESH_S, (min(due) - now) / 1000))

    async def _claim(self) -> None:
        """Lease the channels that have due work (and renew ours); forget idle ones."""
        now = _now_ms()
        with_work = set(await self.store.read(store_deliveries.channels_with_work(now)))
        keys = with_work | set(self.channels)
        if not keys:
            return
        won = set(
            await self.store.write(
                store_deliveries.claim(sorted(keys), self.owner, now, self.lease_ms)
            )
        )
        for key, state in list(self.channels.items()):
            idle = key not in with_work and not state.window
            if (key not in won or idle) and not state.in_flight:
                del self.channels[key]
        for key in won:
            if key not in self.channels and key in with_work:
                self.channels[key] = ChannelState(
                    key[0],
                    key[1],
                    Limiter(
                        limit=self.settings.channel_initial_concurrency,
                        max_limit=self.settings.channel_max_concurrency,
                    ),
                )

    async def _refill(self, state: ChannelState, full: bool) -> None:
        if full:
            state.window = {i: o for i, o in state.window.items()
                            if i in state.in_flight or i in self._unflushed}
            state.loaded_to = 0
        if len(state.window) < WINDOW // 2 or full:
            read_from = time.monotonic()
            rows = await self.store.read(
                store_deliveries.undelivered(
                    state.org_id, state.channel_id, state.loaded_to, WINDOW
                )
            )
            for o in rows:
                if (o.id not in state.window and o.id not in self._unflushed
                        and self._flushed.get(o.id, -1.0) < read_from):
                    state.window[o.id] = o
                state.loaded_to = max(state.loaded_to, o.id)
            if full:
                state.loaded_to = max(state.window, default=0)
        if time.monotonic() - state.channel_checked > REFRESH_S:
            state.channel = await self.store.read(
                store_channels.get_channel(state.org_id, state.channel_id)
            )
            state.channel_checked = time.monotonic()

    def _start_runnable(self, state: ChannelState) -> None:
        now = _now_ms()
        blocked: set[str] = set()
        for o in state.in_flight.values():
            blocked |= o.ids
        for delivery_id in sorted(state.window):
            if len(state.in_flight) >= state.limiter.permits:
                return
            o = state.window[delivery_id]
            if delivery_id in state.in_flight:
                continue
            ids = o.ids
            if o.next_attempt_ms <= now and not (ids & blocked):
                state.in_flight[delivery_id] = o
                task = asyncio.create_task(self._attempt(state, o))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
            blocked |= ids

    async def _org(self, org_id: int) -> OrgInfo:
        """The org's zone, modules and signing secrets, refreshed every 5 s by one caller
        at a time; attempts meanwhile use the copy they have."""
        info = self.orgs.get(org_id)
        if info is not None and (time.monotonic() - info.checked <= 5
                                 or org_id in self._refreshing):
            return info
        self._refreshing.add(org_id)
        try:
            org = await self.store.read(tenants.get_org(org_id))
            modules, _ = await self.store.read(tenants.load_catalog(org_id))
            secrets = await self.store.write(
                store_deliveries.signing_secrets(org_id, _now_ms(), signing.new_secret()))
            info = OrgInfo(clock.zone(org.timezone if org else "UTC"),
                           {m.api_name: m for m in modules}, secrets, time.monotonic())
            self.orgs[org_id] = info
        finally:
            self._refreshing.discard(org_id)
        return info

    async def _attempt(self, state: ChannelState, o: Owed) -> None:
        try:
            async with self._global:
                await self._attempt_inner(state, o)
        finally:
            state.in_flight.pop(o.id, None)
            self._wake_send.set()

    async def _attempt_inner(self, state: ChannelState, o: Owed) -> None:
        channel = state.channel
        started = _now_ms()
        if channel is None:
            state.window.pop(o.id, None)
            self._unflushed.add(o.id)
            self._results.append(
                Result(
                    o.id,
                    "cancelled",
                    o.attempts,
                    started,
                    started,
                    started,
                    "",
                    "",
                    None,
                    None,
                    "channel deleted",
                    None,
                )
            )
            return
        info = await self._org(state.org_id)
        body = orjson.dumps(
            build_body(
                o.notification,
                channel,
                self.base_url,
                started,
                tz=info.tz,
                module=info.modules.get(o.notification.module),
            )
        )
        attempt = o.attempts + 1
        headers = signing.headers(info.secrets, o.notification_id, started // 1000, body)
        headers.update(
            {
                "User-Agent": "crmwatch",
                "X-Crmwatch-Notification-Id": o.notification_id,
                "X-Crmwatch-Attempt": str(attempt),
                "X-Crmwatch-Channel-Seq": str(o.channel_seq),
                "X-Crmwatch-Previous-Channel-Seq": str(o.channel_seq - 1),
            }
        )
        outcome: Outcome = await self.sender.send(channel.notify_url, body, headers)
        self._settle(state, o, outcome, attempt, started, channel.notify_url, body)

    def _settle(
        self,
        state: ChannelState,
        o: Owed,
        outcome: Outcome,
        attempt: int,
        started: int,
        url: str,
        body: bytes,
    ) -> None:
        now = _now_ms()
        first = o.first_attempt_ms or started
        if outcome.failure is None:
            status, next_ms = "delivered", now
            state.limiter = state.limiter.on_success(outcome.latency_ms)
            state.window.pop(o.id, None)
            self.stats["delivered"] += 1
        else:
            state.limiter = state.limiter.on_failure(outcome.failure, now)
            self.stats["failed"] += 1
            nxt = self.schedule.next_attempt(
                attempt,
                now,
                first_attempt_ms=first,
                retry_after_s=outcome.retry_after_s,
                jitter=self._jitter.random(),
            )
            if nxt is None:
                status, next_ms = "dead", now
                state.window.pop(o.id, None)
            else:
                status, next_ms = "retrying", nxt
                state.window[o.id] = Owed(
                    o.id, o.notification_id, o.channel_seq, o.notification, attempt, nxt, first
                )
        self._unflushed.add(o.id)
        self._results.append(
            Result(
                o.id,
                status,
                attempt,
                next_ms,
                first,
                started,
                url,
                body.decode(),
                outcome.status,
                round(outcome.latency_ms, 3),
                outcome.error,
                outcome.response_body.decode("utf-8", "replace") if outcome.response_body else None,
            )
        )

    # -- results ------------------------------------------------------------------------------

    async def _flush(self) -> None:
        if not self._results:
            return
        batch, self._results = self._results, []
        try:
            await self.store.write(store_deliveries.record(batch, _now_ms()))
        except Exception:
            log.warning("writing %d delivery outcomes together failed; writing them one by "
                        "one", len(batch), exc_info=True)
            await self._record_each(batch)
        self._written(batch)

    async def _record_each(self, batch: list[Result]) -> None:
        """Write `batch` row by row, a row that cannot be written in its reduced form (state
        and numbers only), so that one bad row never holds back the others. When even that
        fails, the database is the trouble: what is left is kept for the next flush."""
        for i, r in enumerate(batch):
            try:
                await self.store.write(store_deliveries.record([r], _now_ms()))
                continue
            except Exception:
                log.exception("delivery %s: its outcome could not be written; writing it "
                              "without the attempt's details", r.delivery_id)
            try:
                await self.store.write(store_deliveries.record([store_deliveries.reduced(r)],
                                                               _now_ms()))
            except Exception:
                self._results = batch[i:] + self._results
                self._written(batch[:i])
                raise

    def _written(self, batch: list[Result]) -> None:
        """Remember `batch` as written (unless a later outcome of the same delivery waits)."""
        pending = {r.delivery_id for r in self._results}
        written = {r.delivery_id for r in batch} - pending
        now = time.monotonic()
        for delivery_id in written:
            self._flushed[delivery_id] = now
            self._flushed_order.append((now, delivery_id))
        while self._flushed_order and self._flushed_order[0][0] < now - FLUSHED_MEMORY_S:
            _t, old = self._flushed_order.popleft()
            if self._flushed.get(old, now) < now - FLUSHED_MEMORY_S:
                del self._flushed[old]
        self._unflushed -= written

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.delivery_flush_seconds)
            await self._flush()
