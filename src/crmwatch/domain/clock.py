"""Ids and timestamps as Zoho CRM writes them; pure functions, time passed in."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ID_RANGE = 10**9
"""Each org's ids are `<10-digit org prefix><9-digit counter>`: 19 digits, below 2**63."""

MAX_PREFIX = 9_223_372_035
MIN_PREFIX = 1_000_000_000


def make_id(prefix: int, counter: int) -> int:
    """Build a 19-digit id from an org prefix and a counter value."""
    if not MIN_PREFIX <= prefix <= MAX_PREFIX or not 0 < counter < ID_RANGE:
        raise ValueError("id out of range")
    return prefix * ID_RANGE + counter


def is_record_id(text: str) -> bool:
    """True for a numeric id string that fits a signed 64-bit integer."""
    return text.isascii() and text.isdigit() and 0 < len(text) <= 19 and int(text) < 2**63


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The time zone called `name`; raises ValueError for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def format_ms(epoch_ms: int, tz: ZoneInfo) -> str:
    """Epoch milliseconds as Zoho shows them: `2026-11-23T01:10:47-08:00`."""
    return _format_s(epoch_ms // 1000, tz)


@lru_cache(maxsize=4096)
def _format_s(epoch_s: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch_s, tz).isoformat()


_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})$"
)


def parse_datetime(text: str) -> datetime:
    """Parse ISO 8601 with an offset (`Z` too); raises ValueError otherwise."""
    m = _ISO.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError("not an ISO 8601 date-time with offset")
    year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
    second = int(m.group(6) or 0)
    micro = int((m.group(7) or ".0")[1:].ljust(6, "0"))
    off = m.group(8)
    if off in ("Z", "z"):
        tz: timezone = UTC
    else:
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            raise ValueError("bad offset")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(moment.timestamp() * 1000)


def utc_text(moment: datetime) -> str:
    """Canonical stored form of a date-time: UTC, seconds, `+00:00` (sorts as text)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def local_text(stored: str, tz: ZoneInfo) -> str:
    """A stored UTC date-time shown in the org's zone."""
    return datetime.fromisoformat(stored).astimezone(tz).isoformat()


def parse_date(text: str) -> date:
    """Parse `yyyy-MM-dd`; raises ValueError otherwise."""
    if not isinstance(text, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError("not a yyyy-MM-dd date")
    return date.fromisoformat(text)
