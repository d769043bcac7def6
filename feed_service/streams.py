"""Stream identities: `BTCUSDT@1m` in configuration; a venue names them on its wire
(`feed_service.venue.Venue.stream_name`; Binance: `btcusdt@kline_1m`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from functions.core import intervals

_SYMBOL = re.compile(r"^[A-Z0-9]{2,32}$")


@dataclass(frozen=True, order=True, slots=True)
class StreamId:
    symbol: str
    interval: str

    def __post_init__(self) -> None:
        if not _SYMBOL.match(self.symbol):
            raise ValueError(f"invalid symbol {self.symbol!r}")
        intervals.validate(self.interval)

    def __str__(self) -> str:
        return f"{self.symbol}@{self.interval}"

    @classmethod
    def parse(cls, text: str) -> StreamId:
        """`BTCUSDT@1m` (config form); Binance's wire form `btcusdt@kline_1m` is accepted
        too, as configurations written before the venue split may hold it."""
        symbol, sep, interval = text.strip().partition("@")
        if not sep:
            raise ValueError(f"stream {text!r} is not SYMBOL@INTERVAL")
        interval = interval.removeprefix("kline_")
        return cls(symbol.upper(), interval)


def parse_streams(text: str) -> list[StreamId]:
    """Parse a comma-separated list, ignoring blanks and keeping the first of duplicates."""
    seen: dict[StreamId, None] = {}
    for part in text.split(","):
        if part.strip():
            seen.setdefault(StreamId.parse(part), None)
    return list(seen)
