"""Concurrency: the per-channel AIMD limiter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmwatch.domain.concurrency import OVERLOAD, FailureKind, Limiter

KINDS: list[FailureKind] = ["timeout", "429", "503", "5xx", "4xx", "connection"]


class TestShrink:
    """Overload signals halve the limit; other failures leave it."""

    @pytest.mark.parametrize("kind", ["timeout", "429", "503", "connection"])
    def test_overload(self, kind: FailureKind) -> None:
        assert Limiter(limit=8).on_failure(kind).limit == 4

    @pytest.mark.parametrize("kind", ["5xx", "4xx"])
    def test_not_overload(self, kind: FailureKind) -> None:
        lim = Limiter(limit=8)
        assert lim.on_failure(kind) is lim

    def test_floor(self) -> None:
        lim = Limiter(limit=1.5)
        assert lim.on_failure("timeout").limit == 1
        assert lim.on_failure("timeout").on_failure("timeout").permits == 1

    def test_cooldown_counts_a_burst_once(self) -> None:
        lim = Limiter(limit=16, cooldown_ms=1000).on_failure("timeout", now_ms=10_000)
        assert lim.limit == 8
        assert lim.on_failure("timeout", now_ms=10_500).limit == 8
        assert lim.on_failure("timeout", now_ms=11_000).limit == 4

    def test_kinds(self) -> None:
        assert frozenset({"timeout", "429", "503", "connection"}) == OVERLOAD


class TestGrow:
    """Fast answers grow the limit by about one per round of `limit` answers."""

    def test_one_per_round(self) -> None:
        lim = Limiter(limit=4)
        for _ in range(4):
            lim = lim.on_success(50)
        assert 4.8 < lim.limit < 5.0
        for _ in range(5):
            lim = lim.on_success(50)
        assert lim.permits == 5

    def test_slow_answers_do_not_grow(self) -> None:
        lim = Limiter(limit=4, slow_ms=2000)
        assert lim.on_success(2500) is lim

    def test_ceiling(self) -> None:
        lim = Limiter(limit=63.99, max_limit=64)
        assert lim.on_success(1).limit == 64
        assert lim.on_success(1).on_success(1).limit == 64


class TestValidation:
    """Bounds must make sense."""

    @pytest.mark.parametrize("kwargs", [{"min_limit": 0}, {"min_limit": 5, "max_limit": 4},
                                        {"limit": 100}, {"limit": 0.5}, {"decrease": 1.0},
                                        {"decrease": 0}, {"increase": 0}])
    def test_invalid(self, kwargs: dict[str, float]) -> None:
        with pytest.raises(ValueError):
            Limiter(**kwargs)  # type: ignore[arg-type]


class TestProperties:
    """The limit stays within bounds whatever happens."""

    @given(st.lists(st.one_of(st.integers(0, 5000), st.sampled_from(KINDS)), max_size=200),
           st.integers(1, 4), st.integers(4, 64))
    def test_bounded(self, answers: list[int | FailureKind], low: int, high: int) -> None:
        lim = Limiter(limit=float(low), min_limit=low, max_limit=high)
        for t, answer in enumerate(answers):
            if isinstance(answer, int):
                lim = lim.on_success(answer)
            else:
                lim = lim.on_failure(answer, now_ms=t * 700)
            assert low <= lim.limit <= high
            assert low <= lim.permits <= high

    @given(st.integers(1, 64))
    def test_recovers_after_overload(self, start: int) -> None:
        lim = Limiter(limit=float(start)).on_failure("429")
        for _ in range(5000):
            lim = lim.on_success(10)
        assert lim.permits == lim.max_limit
