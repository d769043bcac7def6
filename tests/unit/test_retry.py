"""The shared backoff policy: full jitter means a draw over the whole [0, ceiling]."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.core.retry import BackoffPolicy, parse_retry_after

POLICY = BackoffPolicy(base_s=0.5, cap_s=8.0, retry_after_cap_s=30.0)


def test_the_ceiling_doubles_per_attempt_up_to_the_cap() -> None:
    assert [POLICY.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    assert POLICY.delay(3, 0.0) == 0.0
    assert POLICY.delay(3, 1.0) == 2.0
    assert POLICY.delay(3, 0.25) == 0.5


@given(attempt=st.integers(1, 500), draw=st.floats(-1, 2, allow_nan=False))
def test_a_delay_never_leaves_zero_to_the_ceiling(attempt: int, draw: float) -> None:
    assert 0.0 <= POLICY.delay(attempt, draw) <= min(POLICY.cap_s, POLICY.ceiling(attempt))


def test_retry_after_wins_over_the_draw_and_is_capped() -> None:
    assert POLICY.delay(1, 0.9, retry_after_s=12.0) == 12.0
    assert POLICY.delay(1, 0.9, retry_after_s=3600.0) == 30.0
    assert POLICY.delay(1, 0.9, retry_after_s=-5.0) == 0.0
    assert BackoffPolicy(0.1, 2.0).delay(1, 0.9, retry_after_s=3600.0) == 3600.0


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError):
        POLICY.ceiling(0)


@pytest.mark.parametrize("raw", [None, "", "soon", "nan", "inf", "-inf", "Mon, 99 Foo 2026"])
def test_junk_retry_after_is_none(raw: str | None) -> None:
    assert parse_retry_after(raw, 0.0) is None


def test_retry_after_as_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after(" 7 ", now.timestamp()) == 7.0
    assert parse_retry_after("-3", now.timestamp()) == 0.0
    date = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(date, now.timestamp()) == 90.0
