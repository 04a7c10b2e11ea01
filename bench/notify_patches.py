"""Experiment launcher: `crmwatch` with candidate delivery fixes monkeypatched in.

    NBX_PATCHES=org,resend,record,uvloop,claimsql \\
        python bench/notify_bench.py --launcher bench/notify_patches.py ...

Not product code: it exists to measure, with bench/notify_bench.py, what each fix suggested in
docs/benchmarks.md ("Notifications") would be worth before it is made in src/. It runs the
normal CLI (`serve`, `worker`, ...) after applying the patches named in NBX_PATCHES
(comma-separated; none by default):

* org: `DeliveryService._org` refreshes an org's catalog and secrets once (single flight),
  and attempts keep using the stale copy meanwhile, instead of every attempt in flight
  reloading the catalog when the 5 s cache expires.
* resend: a delivery whose outcome is settled but not yet written is not taken back into the
  window by the 5 s full reload (today it is sent again, with the same notification id).
* record: outcomes are written with two executemany statements per batch instead of two
  statements per outcome (on PostgreSQL, two round trips per outcome).
* uvloop: `crmwatch worker` runs on uvloop (`serve` already does, through uvicorn).
* claimsql: SQLite `channels_with_work` written so that the partial index `deliveries_due`
  applies (today it scans the whole deliveries table through `deliveries_channel`).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any


def _patch_org() -> None:
    from crmwatch.delivery import worker

    original = worker.DeliveryService._org

    async def _org(self: Any, org_id: int) -> Any:
        info = self.orgs.get(org_id)
        if info is not None and time.monotonic() - info.checked <= 5:
            return info
        flights: dict[int, asyncio.Future[Any]] = self.__dict__.setdefault("_nbx_flights", {})
        fut = flights.get(org_id)
        if fut is None:
            fut = asyncio.ensure_future(original(self, org_id))
            flights[org_id] = fut
            fut.add_done_callback(lambda _f: flights.pop(org_id, None))
        if info is not None:
            return info  # stale for a moment, while one refresh runs
        return await asyncio.shield(fut)

    worker.DeliveryService._org = _org  # type: ignore[method-assign]


def _patch_resend() -> None:
    from crmwatch.delivery import worker

    settle, refill, flush = (
        worker.DeliveryService._settle,
        worker.DeliveryService._refill,
        worker.DeliveryService._flush,
    )

    def _unrecorded(self: Any) -> set[int]:
        return self.__dict__.setdefault("_nbx_unrecorded", set())  # type: ignore[no-any-return]

    def _settle(self: Any, state: Any, o: Any, *args: Any) -> None:
        settle(self, state, o, *args)
        if o.id not in state.window:  # delivered or dead: settled, not yet written
            _unrecorded(self).add(o.id)

    async def _refill(self: Any, state: Any, full: bool) -> None:
        await refill(self, state, full)
        done = _unrecorded(self)
        for i in [i for i in state.window if i in done and i not in state.in_flight]:
            del state.window[i]

    async def _flush(self: Any) -> None:
        ids = {r.delivery_id for r in self._results}
        await flush(self)
        _unrecorded(self).difference_update(ids)

    worker.DeliveryService._settle = _settle  # type: ignore[method-assign]
    worker.DeliveryService._refill = _refill  # type: ignore[method-assign]
    worker.DeliveryService._flush = _flush  # type: ignore[method-assign]


def _patch_record() -> None:
    from crmwatch.store import deliveries
    from crmwatch.store.base import Query

    def record(results: Any, now_ms: int) -> Any:
        finish, insert = [], []
        for r in results:
            if r.status == "cancelled":
                yield Query("cancel_delivery", (r.delivery_id, now_ms, r.error))
                continue
            finish.append(
                (
                    r.delivery_id,
                    r.status,
                    r.attempts,
                    r.next_attempt_ms,
                    r.first_attempt_ms,
                    now_ms,
                    r.status_code,
                    r.error,
                    r.latency_ms,
                )
            )
            insert.append(
                (
                    r.delivery_id,
                    r.attempts,
                    r.started_ms,
                    r.url,
                    r.request_body,
                    r.status_code,
                    r.latency_ms,
                    r.error,
                    r.response_body,
                )
            )
        if finish:
            yield Query("finish_attempt", finish, "many")
            yield Query("insert_attempt", insert, "many")

    deliveries.record = record


def _patch_claimsql() -> None:
    from crmwatch.store import sqlite

    original = sqlite.queries

    def queries(dialect: str) -> Any:
        sql = dict(original(dialect))
        if dialect == "sqlite":
            sql["channels_with_work"] = (
                "SELECT DISTINCT org_id, channel_id FROM deliveries "
                "WHERE status IN ('pending', 'retrying', 'sending') AND status <> 'sending' "
                "AND next_attempt_time <= ? AND +org_id > 0 LIMIT ?"
            )
        return sql

    sqlite.queries = queries


def main() -> None:
    patches = {p.strip() for p in os.environ.get("NBX_PATCHES", "").split(",") if p.strip()}
    known = {
        "org": _patch_org,
        "resend": _patch_resend,
        "record": _patch_record,
        "claimsql": _patch_claimsql,
    }
    for name in sorted(patches - {"uvloop"}):
        if name not in known:
            sys.exit(f"notify_patches: unknown patch {name!r}")
        known[name]()
    if "uvloop" in patches:
        import uvloop

        uvloop.install()
    from crmwatch.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
