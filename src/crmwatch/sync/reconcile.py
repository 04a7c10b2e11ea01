"""The sync's rules, as pure functions: which version of a record wins, what a gap in the
notification sequence means, when to renew a channel, where a catch-up starts.

Nothing here does I/O or reads a clock: times come in as arguments.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

RENEW_FRACTION = 0.8
"""Renew a channel once this fraction of its lifetime has passed..."""
RENEW_MARGIN_S = 300.0
"""...and never later than this many seconds before it expires."""


class Verdict(enum.Enum):
    """What to do with a row from a Bulk Read export, given what the mirror holds."""

    WRITE = "write"
    """The mirror has no newer version: write the row."""
    SKIP = "skip"
    """The mirror holds a newer (or the same) version, or the record is deleted."""
    REREAD = "reread"
    """Same Modified_Time, different values: only the source can tell which is newer."""


def instant(text: str | None) -> datetime | None:
    """An API date-time (`2026-11-23T04:00:00-08:00`) as an aware datetime; None if absent
    or not a date-time. Compared as instants, so offsets (DST, zones) do not matter."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def csv_verdict(incoming: Mapping[str, Any], stored: Mapping[str, Any] | None, *,
                deleted: bool, changed_in_window: bool) -> Verdict:
    """The rule for a snapshot row (`incoming`, records API shapes) against the mirror's
    `_record` of the same id (`stored`, None when absent).

    - a deleted id is never resurrected by a CSV row;
    - a record the change feed saw change while the page was made (`changed_in_window`, the
      DBLog watermark rule) is left to the feed;
    - otherwise update-if-newer by `Modified_Time`; an equal `Modified_Time` with equal
      values needs nothing, with different values it is read again (times have one-second
      resolution: two writes in one second look alike).
    """
    if deleted or changed_in_window:
        return Verdict.SKIP
    if stored is None:
        return Verdict.WRITE
    new = instant(incoming.get("Modified_Time"))
    old = instant(stored.get("Modified_Time"))
    if new is None or old is None:
        return Verdict.REREAD if dict(incoming) != dict(stored) else Verdict.SKIP
    if new > old:
        return Verdict.WRITE
    if new < old:
        return Verdict.SKIP
    return Verdict.SKIP if dict(incoming) == dict(stored) else Verdict.REREAD


def fetched_split(asked: Iterable[str], found: Iterable[Mapping[str, Any]]
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """Records read by id: (those the source returned, the ids it did not: deleted).

    Ids are never reused, so an id the records API no longer returns is gone for good.
    """
    records = [dict(r) for r in found]
    present = {str(r.get("id")) for r in records}
    missing = list(dict.fromkeys(i for i in asked if i not in present))
    return records, missing


# -- the notification sequence (crmwatch's X-Crmwatch-Channel-Seq) ---------------------------

@dataclass(frozen=True)
class SeqTracker:
    """Which channel sequence numbers have arrived: all up to `done`, plus `seen` above it.

    crmwatch numbers a channel's notifications 1, 2, 3, ... and sends each with the number of
    the one before it; notifications about different records go out concurrently, so they may
    arrive out of order. A number that is still missing after a grace period is a gap.
    """

    done: int = 0
    seen: frozenset[int] = frozenset()
    missing_since: float | None = None
    """When the oldest hole was first noticed (the caller's clock), None without holes."""

    def add(self, seq: int, previous: int, now: float) -> SeqTracker:
        """The tracker after notification `seq` (whose predecessor is `previous`) arrived."""
        # the first one this mirror hears of: everything before it is the catch-up's job
        first = self.done == 0 and not self.seen
        done = max(previous, 0) if first else self.done
        if seq <= done:
            return SeqTracker(done, self.seen, self.missing_since)
        seen = set(self.seen) | {seq}
        while done + 1 in seen:
            done += 1
            seen.discard(done)
        holes = bool(seen)
        since = (self.missing_since if self.missing_since is not None else now) if holes else None
        return SeqTracker(done, frozenset(seen), since)

    def gap(self, now: float, grace: float) -> bool:
        """Whether a hole has lasted longer than `grace` seconds."""
        return self.missing_since is not None and now - self.missing_since > grace

    def closed(self) -> SeqTracker:
        """After a catch-up covered everything: the holes no longer matter."""
        top = max(self.seen, default=self.done)
        return SeqTracker(max(top, self.done), frozenset(), None)


def restart_tracker(last_seq: int) -> SeqTracker:
    """A tracker that continues from the last sequence number a previous run applied."""
    return SeqTracker(last_seq, frozenset(), None)


# -- channel renewal and catch-up windows ----------------------------------------------------

def renew_at(enabled_at: float, expiry: float) -> float:
    """When to renew a channel enabled at `enabled_at` that expires at `expiry` (seconds):
    once RENEW_FRACTION of its lifetime has passed, and never later than RENEW_MARGIN_S
    before expiry (half-way for lifetimes shorter than that margin)."""
    lifetime = max(expiry - enabled_at, 0.0)
    at = enabled_at + lifetime * RENEW_FRACTION
    latest = expiry - RENEW_MARGIN_S
    if latest <= enabled_at:
        return enabled_at + lifetime / 2
    return min(at, latest)


def lapsed(expiry: float | None, now: float) -> bool:
    """Whether a channel's lifetime is over (or it was never enabled)."""
    return expiry is None or now >= expiry


def catchup_since(last_sync: datetime | None, margin: timedelta) -> datetime | None:
    """Where a Modified_Time catch-up starts: the last sync time minus a safety margin
    (clock skew, commits that became visible late); None means from the beginning."""
    return None if last_sync is None else last_sync - margin


def zoho_datetime(moment: datetime) -> str:
    """A date-time as Zoho takes it in criteria and If-Modified-Since: no fraction."""
    return moment.replace(microsecond=0).isoformat()


def deleted_page_done(page: Sequence[Mapping[str, Any]], since: datetime | None) -> bool:
    """Whether `/deleted` (newest first) has gone past `since` on this page."""
    if since is None or not page:
        return not page
    oldest = instant(str(page[-1].get("deleted_time") or ""))
    return oldest is not None and oldest < since


# -- the Zoho catch-up's listing: windows by Modified_Time -----------------------------------

@dataclass(frozen=True)
class Listing:
    """The next request of a Zoho catch-up listing (`GET /{M}` sorted by `Modified_Time`
    ascending, `If-Modified-Since: since`).

    An offset listing read while records change is shifted by every record that leaves a
    position before the cursor (edited records move to the end, deleted ones vanish), and a
    shift past the cursor skips a record that did not change. So each page that shows a newer
    `Modified_Time` than `since` ends its listing, and the next one starts afresh at that page's
    last `Modified_Time`: only the records of that same second are read again, and an edit or
    a deletion meanwhile shifts nothing not yet read. A page token is followed only while every
    record shares the second `since` (If-Modified-Since cannot split a second); that also keeps
    each listing under Zoho's page-token limit (100,000 records) unless one second holds more.
    """

    since: str | None
    """If-Modified-Since of this listing (None: every record)."""
    page_token: str | None = None
    """The next page of this listing; None: the listing starts afresh."""


@dataclass(frozen=True)
class Stuck:
    """More records share the second `at` than a listing pages through (the server refused
    the page token past its limit): the catch-up cannot list them all."""

    at: str
    resume: str
    """Where the catch-up goes on: the next second."""


def listing_after(listing: Listing, page: Sequence[Mapping[str, Any]], more: bool,
                  next_token: str | None) -> Listing | Stuck | None:
    """What follows a page of `listing` (records sorted by Modified_Time ascending): None when
    the window is done, else the next request. An equal Modified_Time is not newer: a fresh
    listing starts at the last time seen, so that second's records are read again, never
    skipped."""
    if not page or not more:
        return None
    last = str(page[-1].get("Modified_Time") or "")
    newest = instant(last)
    start = instant(listing.since)
    if newest is not None and (start is None or newest > start):
        return Listing(since=last)
    if next_token:
        return Listing(since=listing.since, page_token=next_token)
    return listing_stuck(listing) if listing.since is not None else None


def listing_stuck(listing: Listing) -> Stuck | None:
    """After the server refused `listing`'s page token at its limit: every record the listing
    showed shares the second `since` (otherwise it would have started afresh), so the
    catch-up goes on at the next second. None without a `since` (nothing to split)."""
    start = instant(listing.since)
    if listing.since is None or start is None:
        return None
    return Stuck(at=listing.since, resume=(start + timedelta(seconds=1)).isoformat())
