"""Candle interval arithmetic.

Binance names intervals `1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M`. Every
interval but `1M` has a fixed length, and candles are aligned on the Unix epoch (weeks
start on Monday, which the epoch is not: 1970-01-01 was a Thursday, hence the offset).
Months are calendar months, so they get their own arithmetic instead of a fixed length.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from functions.core.errors import InvalidInterval

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
SUPPORTED = (
    "1s",
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
)
# 1970-01-05 is the first Monday after the epoch; Binance weekly candles open on Mondays.
_WEEK_OFFSET_MS = 4 * 86_400_000


def validate(interval: str) -> str:
    """Return the interval unchanged if Binance knows it, else raise InvalidInterval."""
    if interval not in SUPPORTED:
        raise InvalidInterval(f"unsupported interval {interval!r}; expected one of {SUPPORTED}")
    return interval


def interval_ms(interval: str) -> int:
    """Length of one candle in milliseconds (a 31-day upper bound for `1M`)."""
    validate(interval)
    if interval == "1M":
        return 31 * 86_400_000
    return int(interval[:-1]) * _UNIT_MS[interval[-1]]


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (naive ones are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400_000) + (delta.seconds * 1_000) + (delta.microseconds // 1_000)


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime for milliseconds since the epoch."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _month_start(ms: int, months_ahead: int = 0) -> int:
    moment = from_ms(ms)
    index = moment.year * 12 + (moment.month - 1) + months_ahead
    return to_ms(datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC))


def open_time_of(ms: int, interval: str) -> int:
    """Open time (ms) of the candle of `interval` that contains instant `ms`."""
    if interval == "1M":
        return _month_start(ms)
    length = interval_ms(interval)
    offset = _WEEK_OFFSET_MS if interval.endswith("w") else 0
    return ((ms - offset) // length) * length + offset


def next_open_ms(open_ms: int, interval: str) -> int:
    """Open time of the candle after the one that opened at `open_ms`."""
    if interval == "1M":
        return _month_start(open_ms, 1)
    return open_ms + interval_ms(interval)


def close_ms(open_ms: int, interval: str) -> int:
    """Binance's close time: the last millisecond of the candle."""
    return next_open_ms(open_ms, interval) - 1


def candles_between(last_open_ms: int, new_open_ms: int, interval: str) -> list[int]:
    """Open times strictly between two candles: the ones a gap left out, oldest first."""
    missing: list[int] = []
    cursor = next_open_ms(last_open_ms, interval)
    while cursor < new_open_ms:
        missing.append(cursor)
        cursor = next_open_ms(cursor, interval)
    return missing
