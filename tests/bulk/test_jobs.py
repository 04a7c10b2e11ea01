"""Bulk Read's pure rules: the download limit, page-token life, failure reasons."""

from __future__ import annotations

import errno

from hypothesis import given
from hypothesis import strategies as st

from crmwatch.bulk.jobs import DownloadLimit, failure_reason


def test_download_limit_blocks_for_the_rest_of_the_minute() -> None:
    limit = DownloadLimit(per_minute=3)
    assert [limit.check(1, t) for t in (0, 10_000, 20_000)] == [None, None, None]
    assert limit.check(1, 30_000) == 30.0  # until a minute after the first
    assert limit.check(2, 30_000) is None  # another org has its own count
    assert limit.check(1, 59_999) == 0.001
    assert limit.check(1, 60_000) is None  # the first has left the window
    assert limit.check(1, 60_001) == 9.999


def test_download_limit_off() -> None:
    limit = DownloadLimit(per_minute=0)
    assert all(limit.check(1, t) is None for t in range(1000))


@given(st.integers(1, 20), st.lists(st.integers(0, 300_000), max_size=200))
def test_download_limit_never_allows_more_than_n_a_minute(n: int, times: list[int]) -> None:
    limit = DownloadLimit(per_minute=n)
    allowed = [t for t in sorted(times) if limit.check(7, t) is None]
    for i, t in enumerate(allowed):
        assert sum(1 for u in allowed[i:] if u < t + 60_000) <= n


def test_failure_reason_has_no_paths() -> None:
    err = OSError(errno.ENOSPC, "No space left on device", "/srv/secret/1.zip.part")
    assert failure_reason(err) == "No space left on device"
    assert failure_reason(ValueError("bad criteria")) == "ValueError: bad criteria"
