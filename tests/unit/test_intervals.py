"""Candle interval arithmetic: epoch-aligned fixed intervals, Monday weeks, calendar months."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.core.errors import InvalidInterval
from functions.core.intervals import (
    SUPPORTED,
    candles_between,
    close_ms,
    from_ms,
    interval_ms,
    next_open_ms,
    open_time_of,
    to_ms,
    validate,
)

FIXED = [i for i in SUPPORTED if i != "1M"]
# 1970-01-01 .. 2100-01-01
instants = st.integers(min_value=0, max_value=4_102_444_800_000)
BINANCE_INTERVALS = [
    *("1s", "1m", "3m", "5m", "15m", "30m"),
    *("1h", "2h", "4h", "6h", "8h", "12h"),
    *("1d", "3d", "1w", "1M"),
]


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return to_ms(datetime(year, month, day, hour, minute, second, tzinfo=UTC))


def test_supported_is_exactly_binances_list() -> None:
    assert list(SUPPORTED) == BINANCE_INTERVALS
    for interval in BINANCE_INTERVALS:
        assert validate(interval) == interval


@pytest.mark.parametrize(
    ("interval", "length"),
    [
        ("1s", 1_000),
        ("1m", 60_000),
        ("15m", 900_000),
        ("4h", 14_400_000),
        ("1d", 86_400_000),
        ("3d", 259_200_000),
        ("1w", 604_800_000),
        ("1M", 31 * 86_400_000),
    ],
)
def test_interval_ms(interval: str, length: int) -> None:
    assert interval_ms(interval) == length


@settings(max_examples=150, deadline=None)
@given(interval=st.sampled_from(FIXED), instant=instants)
def test_fixed_interval_candle_contains_the_instant_and_is_aligned(interval: str, instant: int) -> None:
    length = interval_ms(interval)
    opened = open_time_of(instant, interval)
    nxt = next_open_ms(opened, interval)
    assert opened <= instant < nxt
    assert nxt - opened == length
    assert open_time_of(opened, interval) == opened
    assert close_ms(opened, interval) == nxt - 1
    assert open_time_of(close_ms(opened, interval), interval) == opened
    assert open_time_of(nxt, interval) == nxt
    moment = from_ms(opened)
    if interval == "1w":
        assert moment.weekday() == 0  # Monday
        assert moment.time() == datetime.min.time()
    else:
        assert opened % length == 0
        if interval in ("1d", "3d"):
            assert moment.time() == datetime.min.time()


@settings(max_examples=150, deadline=None)
@given(instant=instants)
def test_monthly_candle_is_the_calendar_month(instant: int) -> None:
    opened = open_time_of(instant, "1M")
    nxt = next_open_ms(opened, "1M")
    assert opened <= instant < nxt
    start, end = from_ms(opened), from_ms(nxt)
    here = from_ms(instant)
    assert (start.year, start.month, start.day, start.time()) == (
        here.year,
        here.month,
        1,
        datetime.min.time(),
    )
    assert end.day == 1 and end.time() == datetime.min.time()
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == 1
    assert close_ms(opened, "1M") == nxt - 1
    assert from_ms(close_ms(opened, "1M")).month == start.month
    assert open_time_of(opened, "1M") == opened
    assert open_time_of(nxt - 1, "1M") == opened


def test_weekly_candles_open_on_monday_like_binance() -> None:
    monday = ms(2023, 1, 2)  # 2023-01-02T00:00Z, a Monday: a Binance weekly open
    assert monday == 1_672_617_600_000
    assert open_time_of(monday, "1w") == monday
    assert open_time_of(ms(2023, 1, 5, 12, 30), "1w") == monday
    assert open_time_of(ms(2023, 1, 8, 23, 59, 59) + 999, "1w") == monday
    assert open_time_of(ms(2023, 1, 1, 23, 59), "1w") == ms(2022, 12, 26)
    assert next_open_ms(monday, "1w") == ms(2023, 1, 9)
    assert close_ms(monday, "1w") == ms(2023, 1, 9) - 1
    # BTCUSDT's first weekly kline on Binance opened 2017-08-14T00:00Z (1502668800000).
    assert open_time_of(1_502_668_800_000 + 3 * 86_400_000, "1w") == 1_502_668_800_000


@pytest.mark.parametrize(
    ("instant", "opened", "next_open"),
    [
        ((2024, 1, 31, 18, 0), (2024, 1, 1), (2024, 2, 1)),
        ((2024, 2, 29, 23, 59), (2024, 2, 1), (2024, 3, 1)),  # leap year
        ((2023, 2, 28, 12, 0), (2023, 2, 1), (2023, 3, 1)),
        ((2023, 12, 31, 23, 59), (2023, 12, 1), (2024, 1, 1)),  # year boundary
        ((2025, 4, 30, 0, 0), (2025, 4, 1), (2025, 5, 1)),
        ((2025, 5, 1, 0, 0), (2025, 5, 1), (2025, 6, 1)),
    ],
)
def test_monthly_examples(
    instant: tuple[int, ...], opened: tuple[int, int, int], next_open: tuple[int, int, int]
) -> None:
    assert open_time_of(ms(*instant), "1M") == ms(*opened)
    assert next_open_ms(ms(*opened), "1M") == ms(*next_open)
    assert close_ms(ms(*opened), "1M") == ms(*next_open) - 1


def test_monthly_next_open_from_jan_31_is_feb_1() -> None:
    assert next_open_ms(open_time_of(ms(2024, 1, 31), "1M"), "1M") == ms(2024, 2, 1)
    assert candles_between(ms(2024, 1, 1), ms(2024, 5, 1), "1M") == [
        ms(2024, 2, 1),
        ms(2024, 3, 1),
        ms(2024, 4, 1),
    ]


def test_contract_example_candle_close_time() -> None:
    opened = to_ms(datetime(2025, 10, 25, 10, 29, tzinfo=UTC))
    assert open_time_of(opened + 30_000, "1m") == opened
    assert from_ms(close_ms(opened, "1m")) == datetime(2025, 10, 25, 10, 29, 59, 999_000, tzinfo=UTC)


@settings(max_examples=150, deadline=None)
@given(interval=st.sampled_from(SUPPORTED), instant=instants, gap=st.integers(min_value=0, max_value=30))
def test_candles_between_are_exactly_the_opens_strictly_between(
    interval: str, instant: int, gap: int
) -> None:
    first = open_time_of(instant, interval)
    opens = [first]
    for _ in range(gap):
        opens.append(next_open_ms(opens[-1], interval))
    last = opens[-1]
    missing = candles_between(first, last, interval)
    assert missing == opens[1:-1] if gap else missing == []
    assert all(first < o < last for o in missing)
    assert missing == sorted(set(missing))
    assert all(open_time_of(o, interval) == o for o in missing)
    if interval in FIXED:
        length = interval_ms(interval)
        assert missing == [first + k * length for k in range(1, gap)]


def test_candles_between_examples() -> None:
    t0 = ms(2025, 10, 25, 10, 0)
    assert candles_between(t0, t0, "1m") == []
    assert candles_between(t0, t0 + 60_000, "1m") == []
    assert candles_between(t0, t0 + 4 * 60_000, "1m") == [t0 + 60_000, t0 + 120_000, t0 + 180_000]
    assert candles_between(t0 + 60_000, t0, "1m") == []  # older than the last: nothing missing
    assert candles_between(ms(2023, 1, 2), ms(2023, 1, 23), "1w") == [ms(2023, 1, 9), ms(2023, 1, 16)]


@settings(max_examples=100, deadline=None)
@given(instant=instants)
def test_ms_round_trip(instant: int) -> None:
    moment = from_ms(instant)
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
    assert to_ms(moment) == instant
    assert to_ms(moment.replace(tzinfo=None)) == instant  # naive is taken as UTC
    assert to_ms(moment.astimezone(timezone(timedelta(hours=-5)))) == instant


INVALID = ["", "1", "m", "2m", "1W", "1mo", "60s", "1Y", "1y", " 1m", "1m ", "1H", "1D", "5M", "0m", "-1m"]


@pytest.mark.parametrize("interval", INVALID)
def test_invalid_intervals_raise_invalid_interval(interval: str) -> None:
    for call in (
        lambda: validate(interval),
        lambda: interval_ms(interval),
        lambda: open_time_of(0, interval),
        lambda: next_open_ms(0, interval),
        lambda: close_ms(0, interval),
        lambda: candles_between(0, 10**12, interval),
        lambda: candles_between(0, 0, interval),
    ):
        with pytest.raises(InvalidInterval):
            call()


@settings(max_examples=100, deadline=None)
@given(interval=st.text(max_size=5).filter(lambda s: s not in SUPPORTED))
def test_any_unknown_interval_is_invalid(interval: str) -> None:
    with pytest.raises(InvalidInterval) as caught:
        open_time_of(1_700_000_000_000, interval)
    assert isinstance(caught.value, ValueError)
