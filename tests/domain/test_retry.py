"""Retry schedule: exponential backoff, jitter, Retry-After, and the window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmwatch.domain.retry import RetrySchedule, parse_retry_after

DAY = 86_400_000
T0 = 1_763_888_000_000


class TestDelays:
    """The delay doubles from `initial_ms` up to `max_delay_ms`."""

    def test_default_sequence(self) -> None:
        s = RetrySchedule()
        delays = [s.delay_ms(n) for n in range(1, 14)]
        assert delays[:6] == [5_000, 10_000, 20_000, 40_000, 80_000, 160_000]
        assert delays[-1] == 3_600_000
        assert delays == sorted(delays)

    def test_huge_attempt_numbers(self) -> None:
        s = RetrySchedule(multiplier=1000.0)
        assert s.delay_ms(10_000) == s.max_delay_ms

    def test_constant(self) -> None:
        s = RetrySchedule(initial_ms=1000, multiplier=1, max_delay_ms=1000)
        assert {s.delay_ms(n) for n in range(1, 50)} == {1000}

    def test_jitter_shortens_by_at_most_the_fraction(self) -> None:
        s = RetrySchedule(jitter_fraction=0.25)
        assert s.delay_ms(3, jitter=0.0) == 20_000
        assert s.delay_ms(3, jitter=0.5) == 17_500
        assert 15_000 <= s.delay_ms(3, jitter=0.999999) < 15_001

    @pytest.mark.parametrize("kwargs", [
        {"initial_ms": 0}, {"initial_ms": 10, "max_delay_ms": 5}, {"multiplier": 0.5},
        {"multiplier": float("inf")}, {"window_ms": 0}, {"jitter_fraction": 1.0},
        {"jitter_fraction": -0.1}])
    def test_invalid_settings(self, kwargs: dict[str, float]) -> None:
        with pytest.raises(ValueError):
            RetrySchedule(**kwargs)  # type: ignore[arg-type]

    def test_invalid_arguments(self) -> None:
        s = RetrySchedule()
        with pytest.raises(ValueError):
            s.delay_ms(0)
        for jitter in (1.0, -0.5):
            with pytest.raises(ValueError):
                s.delay_ms(1, jitter=jitter)


class TestNextAttempt:
    """The next try is now + delay, honours Retry-After, and never passes the window."""

    def test_plain(self) -> None:
        s = RetrySchedule()
        assert s.next_attempt(1, T0, first_attempt_ms=T0) == T0 + 5_000

    def test_retry_after_longer_than_the_backoff(self) -> None:
        s = RetrySchedule()
        assert s.next_attempt(1, T0, first_attempt_ms=T0, retry_after_s=120) == T0 + 120_000
        assert s.next_attempt(1, T0, first_attempt_ms=T0, retry_after_s=0.0015) == T0 + 5_000

    def test_retry_after_capped_by_the_max_delay(self) -> None:
        s = RetrySchedule()
        got = s.next_attempt(1, T0, first_attempt_ms=T0, retry_after_s=10 * 86_400)
        assert got == T0 + s.max_delay_ms

    @pytest.mark.parametrize("value", [float("nan"), -5.0, 0.0])
    def test_meaningless_retry_after_ignored(self, value: float) -> None:
        s = RetrySchedule()
        assert s.next_attempt(1, T0, first_attempt_ms=T0, retry_after_s=value) == T0 + 5_000

    def test_last_try_at_the_window_end_then_dead(self) -> None:
        s = RetrySchedule()
        end = T0 + DAY
        assert s.next_attempt(20, end - 10, first_attempt_ms=T0) == end
        assert s.next_attempt(21, end, first_attempt_ms=T0) is None
        assert s.next_attempt(21, end + 5, first_attempt_ms=T0) is None

    def test_a_whole_run(self) -> None:
        s = RetrySchedule()
        now, attempt, times = T0, 1, [T0]
        while (nxt := s.next_attempt(attempt, now, first_attempt_ms=T0)) is not None:
            times.append(nxt)
            now, attempt = nxt, attempt + 1
        assert times[-1] == T0 + DAY
        # 10 doublings (5 s .. 42 min 40 s), 22 hourly tries, one last at the window's end
        assert len(times) == 1 + 10 + 22 + 1

    @given(st.integers(1, 60), st.floats(0, 0.999), st.none() | st.floats(0, 10_000),
           st.integers(0, 2 * DAY))
    def test_never_beyond_the_window(self, attempt: int, jitter: float,
                                     retry_after: float | None, elapsed: int) -> None:
        s = RetrySchedule()
        got = s.next_attempt(attempt, T0 + elapsed, first_attempt_ms=T0,
                             retry_after_s=retry_after, jitter=jitter)
        if elapsed >= DAY:
            assert got is None
        else:
            assert got is not None and T0 + elapsed < got <= T0 + DAY

    @given(st.integers(1, 200), st.floats(0, 0.999), st.floats(1, 5), st.integers(1, 10**6))
    def test_delays_non_decreasing(self, attempt: int, jitter: float, multiplier: float,
                                   initial: int) -> None:
        s = RetrySchedule(initial_ms=initial, multiplier=multiplier,
                          max_delay_ms=initial * 1000)
        assert s.delay_ms(attempt, jitter=jitter) <= s.delay_ms(attempt + 1, jitter=jitter)
        assert s.delay_ms(attempt, jitter=jitter) <= s.max_delay_ms

    @given(st.lists(st.floats(0, 0.999), min_size=40, max_size=40))
    def test_schedule_times_increase(self, jitters: list[float]) -> None:
        s = RetrySchedule()
        now = T0
        for attempt, jitter in enumerate(jitters, 1):
            nxt = s.next_attempt(attempt, now, first_attempt_ms=T0, jitter=jitter)
            if nxt is None:
                assert now >= T0 + DAY
                return
            assert now < nxt <= T0 + DAY
            now = nxt


class TestRetryAfterHeader:
    """Retry-After is delta-seconds or an HTTP-date."""

    def test_seconds(self) -> None:
        assert parse_retry_after("120", T0) == 120.0
        assert parse_retry_after(" 0 ", T0) == 0.0

    def test_http_date(self) -> None:
        # T0 is 2025-11-23T08:53:20Z
        assert parse_retry_after("Sun, 23 Nov 2025 08:55:20 GMT", T0) == 120.0
        assert parse_retry_after("Sun, 23 Nov 2025 08:00:00 GMT", T0) == 0.0

    @pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Sun, 99 Nov 2025"])
    def test_bad(self, value: str | None) -> None:
        assert parse_retry_after(value, T0) is None
