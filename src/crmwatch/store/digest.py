"""Flows for record digests: one module's records over an id range, in id order, by pages.

Each page is its own read, so a digest over a large module never holds more than a page and
lets other requests run between pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crmwatch.store.base import Flow, Query

LAST_ID = 2**63 - 1


def count(org_id: int, module: str, low: int, high: int) -> Flow[int]:
    """How many records of `module` have an id in `[low, high]`."""
    value = yield Query("digest_count", (org_id, module, low, high), "val")
    return int(value or 0)


def page(org_id: int, module: str, low: int, high: int, limit: int
         ) -> Flow[list[Sequence[Any]]]:
    """Up to `limit` rows `(id, data, created_time, modified_time)` with ids in
    `[low, high]`, ascending."""
    rows = yield Query("digest_page", (org_id, module, low, high, limit), "all")
    return list(rows)
