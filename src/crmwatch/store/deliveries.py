"""Flows for delivery workers: leases, windows of owed deliveries, attempt results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from crmwatch.domain.matching import Affected, Notification
from crmwatch.store.base import Flow, Query


@dataclass(frozen=True, slots=True)
class Owed:
    """One undelivered delivery as a worker holds it."""

    id: int
    notification_id: str
    channel_seq: int
    notification: Notification
    attempts: int
    next_attempt_ms: int
    first_attempt_ms: int | None

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self.notification.ids)


@dataclass(frozen=True, slots=True)
class Result:
    """What one attempt ended in, to be written with the attempt's log row."""

    delivery_id: int
    status: str  # delivered | retrying | dead | cancelled
    attempts: int
    next_attempt_ms: int
    first_attempt_ms: int
    started_ms: int
    url: str
    request_body: str
    status_code: int | None
    latency_ms: float | None
    error: str | None
    response_body: str | None


UNLOGGABLE = "the attempt's details could not be logged"
"""The error an attempt row is written with when its own details could not be stored."""


def storable(text: str | None) -> str | None:
    """`text` as every backend stores it: NUL, which PostgreSQL refuses in text, becomes
    U+FFFD; a lone surrogate, which no backend can encode, becomes "?"; the rest is kept
    exactly. (Bytes from a receiver were decoded with invalid UTF-8 replaced by U+FFFD.)"""
    if text is None:
        return None
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")  # surrogates become "?"
    return text.replace("\x00", "\ufffd")


def reduced(r: Result) -> Result:
    """`r` with only what cannot fail to be stored: its state and our own numbers."""
    return replace(r, url="", request_body="", status_code=None, latency_ms=None,
                   error=UNLOGGABLE, response_body=None)


def _owed(channel_id: str, r: Sequence[Any]) -> Owed:
    affected = None if r[6] is None else tuple(
        Affected(a["record_id"], tuple(a["fields"]), a["values"]) for a in orjson.loads(r[6]))
    n = Notification(channel_id=channel_id, module=r[3], operation=r[4],
                     ids=tuple(orjson.loads(r[5])), affected=affected, first_seq=0,
                     last_seq=0, related=bool(r[7]))
    return Owed(int(r[0]), r[1], int(r[2]), n, int(r[9]), int(r[10]),
                None if r[11] is None else int(r[11]))


def channels_with_work(now_ms: int, limit: int = 1000) -> Flow[list[tuple[int, str]]]:
    rows = yield Query("channels_with_work", (now_ms, limit), "all")
    return [(int(r[0]), str(r[1])) for r in rows]


def claim(keys: Sequence[tuple[int, str]], owner: str, now_ms: int,
          lease_ms: int) -> Flow[list[tuple[int, str]]]:
    """Take or renew the leases of `keys` that are free, lapsed or ours; returns those won."""
    won = []
    for org_id, channel_id in keys:
        got = yield Query("claim_lease", (org_id, channel_id, owner, now_ms + lease_ms,
                                          now_ms), "val")
        if got == owner:
            won.append((org_id, channel_id))
    return won


def release(keys: Sequence[tuple[int, str]], owner: str) -> Flow[None]:
    for org_id, channel_id in keys:
        yield Query("release_lease", (org_id, channel_id, owner))


def undelivered(org_id: int, channel_id: str, after_id: int, limit: int) -> Flow[list[Owed]]:
    rows = yield Query("undelivered", (org_id, channel_id, after_id, limit), "all")
    return [_owed(channel_id, r) for r in rows]


def record(results: Sequence[Result], now_ms: int) -> Flow[None]:
    """Write attempt outcomes: the deliveries' new states and the attempts' log rows, as two
    batched statements (one round trip each on PostgreSQL, whatever the batch size). Text
    goes through `storable`."""
    finish: list[tuple[Any, ...]] = []
    attempts: list[tuple[Any, ...]] = []
    for r in results:
        if r.status == "cancelled":
            yield Query("cancel_delivery", (r.delivery_id, now_ms, r.error))
            continue
        error = storable(r.error)
        finish.append((r.delivery_id, r.status, r.attempts, r.next_attempt_ms,
                       r.first_attempt_ms, now_ms, r.status_code, error, r.latency_ms))
        attempts.append((r.delivery_id, r.attempts, r.started_ms, storable(r.url),
                         storable(r.request_body), r.status_code, r.latency_ms, error,
                         storable(r.response_body)))
    if finish:
        yield Query("finish_attempt", finish, "many")
        yield Query("insert_attempt", attempts, "many")


def signing_secrets(org_id: int, now_ms: int, new_secret: str) -> Flow[list[str]]:
    """The org's signing secrets, newest first; one is created on first use."""
    rows = yield Query("signing_secrets", (org_id, now_ms), "all")
    if not rows:
        yield Query("add_signing_secret", (org_id, new_secret, now_ms))
        return [new_secret]
    return [str(r[0]) for r in rows]


def rotate_secret(org_id: int, now_ms: int, grace_ms: int, new_secret: str
                  ) -> Flow[list[str]]:
    """A new primary secret; the old ones stay valid (signed with too) for `grace_ms`."""
    yield Query("retire_signing_secrets", (org_id, now_ms + grace_ms))
    yield Query("add_signing_secret", (org_id, new_secret, now_ms))
    rows = yield Query("signing_secrets", (org_id, now_ms), "all")
    return [str(r[0]) for r in rows]


def _log_entry(r: Sequence[Any]) -> dict[str, Any]:
    return {"id": str(r[0]), "notification_id": r[1], "channel_id": r[2],
            "channel_seq": int(r[3]), "module": r[4], "operation": r[5],
            "ids": orjson.loads(r[6]), "status": r[7], "attempts": int(r[8]),
            "created_time": int(r[9]), "next_attempt_time": int(r[10]),
            "updated_time": int(r[11]), "last_status_code": r[12], "last_error": r[13],
            "last_latency_ms": r[14], "related": bool(r[15])}


def list_log(org_id: int, channel_id: str | None, status: str | None, limit: int,
             offset: int) -> Flow[list[dict[str, Any]]]:
    rows = yield Query("list_deliveries", (org_id, channel_id, status, limit, offset), "all")
    return [_log_entry(r) for r in rows]


def get_log(org_id: int, delivery_id: int) -> Flow[dict[str, Any] | None]:
    row = yield Query("get_delivery", (org_id, delivery_id), "one")
    if row is None:
        return None
    entry = _log_entry(row)
    attempts = yield Query("delivery_attempts", (delivery_id,), "all")
    entry["attempt_log"] = [
        {"attempt": int(a[0]), "started_time": int(a[1]), "url": a[2],
         "request_body": a[3], "status_code": a[4], "latency_ms": a[5], "error": a[6],
         "response_body": a[7]} for a in attempts]
    return entry


def redeliver_one(org_id: int, delivery_id: int, now_ms: int) -> Flow[bool]:
    row = yield Query("redeliver_one", (org_id, delivery_id, now_ms), "one")
    return row is not None


def redeliver_many(org_id: int, status: str, since_ms: int, now_ms: int) -> Flow[int]:
    rows = yield Query("redeliver_many", (org_id, status, now_ms, since_ms), "all")
    return len(rows)
