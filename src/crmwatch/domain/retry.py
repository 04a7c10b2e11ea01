"""When to try a failed webhook delivery again: exponential backoff inside a fixed window. Pure.

Time and randomness come in as arguments: `now_ms`, the first attempt's time, the receiver's
Retry-After, and a `jitter` number in [0, 1) that the caller draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Delay after the n-th failure: `initial_ms * multiplier**(n-1)`, capped at `max_delay_ms`,
    shortened by up to `jitter_fraction`; no attempt later than `window_ms` after the first.
    """

    initial_ms: int = 5_000
    multiplier: float = 2.0
    max_delay_ms: int = 3_600_000
    window_ms: int = 86_400_000
    jitter_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.initial_ms <= 0 or self.max_delay_ms < self.initial_ms:
            raise ValueError("need 0 < initial_ms <= max_delay_ms")
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise ValueError("multiplier must be at least 1")
        if self.window_ms <= 0:
            raise ValueError("window_ms must be positive")
        if not 0 <= self.jitter_fraction < 1:
            raise ValueError("jitter_fraction must be in [0, 1)")

    def delay_ms(self, attempt: int, *, jitter: float = 0.0) -> int:
        """The backoff after the `attempt`-th failed attempt (1-based), before any cap by the
        window; non-decreasing in `attempt` for a given `jitter`."""
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        steps = attempt - 1
        ceiling = math.log(self.max_delay_ms / self.initial_ms)
        if self.multiplier == 1 or steps * math.log(self.multiplier) < ceiling:
            base = min(self.initial_ms * self.multiplier**steps, float(self.max_delay_ms))
        else:
            base = float(self.max_delay_ms)
        return max(1, int(base * (1 - self.jitter_fraction * jitter)))

    def deadline_ms(self, first_attempt_ms: int) -> int:
        """The last instant an attempt may be made."""
        return first_attempt_ms + self.window_ms

    def next_attempt(self, attempt: int, now_ms: int, *, first_attempt_ms: int,
                     retry_after_s: float | None = None, jitter: float = 0.0) -> int | None:
        """Epoch ms of the next try after the `attempt`-th failure at `now_ms`; None: dead.

        A Retry-After (seconds) longer than the backoff is honoured up to `max_delay_ms`. The
        result never passes the window's end: a delay reaching beyond it becomes one last try
        at the end, and a failure at or after the end is final.
        """
        deadline = self.deadline_ms(first_attempt_ms)
        if now_ms >= deadline:
            return None
        delay = self.delay_ms(attempt, jitter=jitter)
        if retry_after_s is not None and retry_after_s > 0:  # NaN compares False: ignored
            wanted = min(retry_after_s * 1000, float(self.max_delay_ms))
            delay = max(delay, math.ceil(wanted))
        return min(now_ms + delay, deadline)


def parse_retry_after(value: str | None, now_ms: int) -> float | None:
    """A Retry-After header (delta-seconds or an HTTP-date) as seconds from now; None if bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now_ms / 1000)
