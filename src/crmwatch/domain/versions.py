"""API versions and the rules that differ between them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

VERSIONS = ("v2", "v2.1", "v3", "v4", "v5", "v6", "v7", "v8")


@dataclass(frozen=True, slots=True)
class ApiVersion:
    name: str
    number: float

    @property
    def has_page_token(self) -> bool:
        """`page_token` paging on record lists arrived with v2.1."""
        return self.number >= 2.1

    @property
    def max_channel_expiry(self) -> timedelta:
        """Channels live at most a day on v2-v3 and a week from v4 (spec/notifications.md)."""
        return timedelta(days=1) if self.number < 4 else timedelta(weeks=1)

    @property
    def has_bulk_page_token(self) -> bool:
        """Bulk Read's `page_token` / `next_page_token` arrived with v7 (spec/bulk-read.md)."""
        return self.number >= 7

    @property
    def has_notification_condition(self) -> bool:
        return self.number >= 6


def parse_version(text: str) -> ApiVersion | None:
    """The version named in a path segment (`v8`), or None for an unknown one."""
    if text not in VERSIONS:
        return None
    return ApiVersion(text, float(text[1:]))
