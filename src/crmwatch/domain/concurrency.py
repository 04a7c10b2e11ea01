"""Per-channel adaptive concurrency (AIMD), as a pure state machine.

A worker keeps one `Limiter` per channel, sends at most `permits` requests to it at once, and
replaces the value after each answer: overload signals (timeouts, 429, 503, connection
failures) shrink the limit multiplicatively, fast good answers grow it by about `increase` per
round of `limit` answers, anything else leaves it alone. Bounded by [min_limit, max_limit].
With `now_ms` given, overload signals within `cooldown_ms` of the last decrease count once,
so a burst of failures from requests already in flight does not collapse the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, TypeAlias

FailureKind: TypeAlias = Literal["timeout", "429", "503", "5xx", "4xx", "connection"]
OVERLOAD: frozenset[str] = frozenset({"timeout", "429", "503", "connection"})


@dataclass(frozen=True, slots=True)
class Limiter:
    limit: float = 4.0
    min_limit: int = 1
    max_limit: int = 64
    decrease: float = 0.5
    """Factor applied on an overload signal."""
    increase: float = 1.0
    """Growth per round of `limit` good answers."""
    slow_ms: int = 2_000
    """A success slower than this is not a reason to grow."""
    cooldown_ms: int = 1_000
    last_decrease_ms: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.max_limit:
            raise ValueError("need 1 <= min_limit <= max_limit")
        if not self.min_limit <= self.limit <= self.max_limit:
            raise ValueError("limit out of bounds")
        if not 0 < self.decrease < 1 or self.increase <= 0:
            raise ValueError("need 0 < decrease < 1 and increase > 0")

    @property
    def permits(self) -> int:
        """How many requests may be in flight now."""
        return max(self.min_limit, int(self.limit))

    def on_success(self, latency_ms: float) -> Limiter:
        """After a 2xx (or any answer that is not an overload signal) taking `latency_ms`."""
        if latency_ms > self.slow_ms or self.limit >= self.max_limit:
            return self
        grown = min(float(self.max_limit), self.limit + self.increase / self.limit)
        return replace(self, limit=grown)

    def on_failure(self, kind: FailureKind, now_ms: int | None = None) -> Limiter:
        """After a failed attempt; only overload signals change the limit."""
        if kind not in OVERLOAD:
            return self
        if (now_ms is not None and self.last_decrease_ms is not None
                and now_ms - self.last_decrease_ms < self.cooldown_ms):
            return self
        shrunk = max(float(self.min_limit), self.limit * self.decrease)
        return replace(self, limit=shrunk, last_decrease_ms=now_ms)
