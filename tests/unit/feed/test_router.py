"""Dedup and gap backfill, with a fake backfiller and an in-memory publisher."""

from __future__ import annotations

import asyncio
import json

from feed_service.binance import BackfillError, KlineParser, candle_from_rest_row
from feed_service.metrics import FeedMetrics
from feed_service.publisher import MemoryPublisher
from feed_service.router import CandleRouter
from feed_service.streams import StreamId
from functions.core import intervals
from functions.core.contracts import CandleClosed, Market
from functions.core.telemetry import MetricName
from tests.unit.feed.frames import BASE_MS, kline, rest_row

BTC = StreamId("BTCUSDT", "1m")


def live(i: int, symbol: str = "BTCUSDT") -> CandleClosed:
    frame = KlineParser(Market.SPOT).parse(json.dumps(kline(i, symbol=symbol)))
    assert frame.candle is not None
    return frame.candle


class FakeBackfill:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[StreamId, int, int]] = []
        self.fail = fail

    async def fetch(self, stream: StreamId, start_ms: int, end_ms: int) -> list[CandleClosed]:
        self.calls.append((stream, start_ms, end_ms))
        if self.fail:
            raise BackfillError("429 for too long")
        first = (start_ms - BASE_MS) // 60_000
        last = (end_ms - BASE_MS) // 60_000
        return [candle_from_rest_row(rest_row(i), Market.SPOT, stream) for i in range(first, last + 1)]


def indexes(candles: list[CandleClosed]) -> list[tuple[int, str]]:
    return [((intervals.to_ms(c.open_time) - BASE_MS) // 60_000, c.source.value) for c in candles]


def test_duplicates_and_late_candles_are_dropped_and_counted() -> None:
    sink, metrics = MemoryPublisher(), FeedMetrics("test")
    router = CandleRouter(sink, metrics=metrics)

    async def go() -> None:
        for i in (0, 0, 1, 1, 0, 2):
            await router.on_candle(live(i))
        await router.on_candle(live(0, symbol="ETHUSDT"))  # another stream: not a duplicate

    asyncio.run(go())
    assert [c.symbol for c in sink.candles] == ["BTCUSDT"] * 3 + ["ETHUSDT"]
    assert indexes(sink.candles[:3]) == [(0, "stream"), (1, "stream"), (2, "stream")]
    assert metrics.totals[MetricName.FEED_DUPLICATES_DROPPED] == 3
    assert router.states()[BTC].duplicates == 3


def test_gap_is_backfilled_before_the_newer_candle() -> None:
    sink, backfill = MemoryPublisher(), FakeBackfill()
    router = CandleRouter(sink, backfiller=backfill)

    async def go() -> None:
        for i in (0, 1, 5, 6):
            await router.on_candle(live(i))

    asyncio.run(go())
    assert indexes(sink.candles) == [
        (0, "stream"),
        (1, "stream"),
        (2, "backfill"),
        (3, "backfill"),
        (4, "backfill"),
        (5, "stream"),
        (6, "stream"),
    ]
    assert backfill.calls == [(BTC, BASE_MS + 2 * 60_000, BASE_MS + 5 * 60_000 - 1)]


def test_concurrent_copies_of_one_candle_publish_once() -> None:
    """Two connections overlapping during a rotation deliver the same candle at once."""
    sink, backfill = MemoryPublisher(), FakeBackfill()
    router = CandleRouter(sink, backfiller=backfill)

    async def go() -> None:
        await router.on_candle(live(0))
        await asyncio.gather(*(router.on_candle(live(3)) for _ in range(4)))

    asyncio.run(go())
    assert indexes(sink.candles) == [(0, "stream"), (1, "backfill"), (2, "backfill"), (3, "stream")]
    assert len(backfill.calls) == 1


def test_failed_backfill_is_logged_and_the_live_candle_still_goes_out(caplog) -> None:
    sink = MemoryPublisher()
    router = CandleRouter(sink, backfiller=FakeBackfill(fail=True))

    async def go() -> None:
        await router.on_candle(live(0))
        await router.on_candle(live(4))

    asyncio.run(go())
    assert indexes(sink.candles) == [(0, "stream"), (4, "stream")]
    assert router.backfill_failures == 1
    assert any("candles lost" in r.getMessage() for r in caplog.records)


def test_long_gaps_are_capped_to_the_newest_candles() -> None:
    sink, backfill = MemoryPublisher(), FakeBackfill()
    router = CandleRouter(sink, backfiller=backfill, max_backfill=3)

    async def go() -> None:
        await router.on_candle(live(0))
        await router.on_candle(live(100))

    asyncio.run(go())
    assert indexes(sink.candles) == [
        (0, "stream"),
        (97, "backfill"),
        (98, "backfill"),
        (99, "backfill"),
        (100, "stream"),
    ]


def test_forgotten_stream_starts_afresh() -> None:
    sink, backfill = MemoryPublisher(), FakeBackfill()
    router = CandleRouter(sink, backfiller=backfill)

    async def go() -> None:
        await router.on_candle(live(0))
        router.forget(BTC)
        await router.on_candle(live(50))

    asyncio.run(go())
    assert indexes(sink.candles) == [(0, "stream"), (50, "stream")]
    assert backfill.calls == []


def test_without_a_backfill_source_the_gap_is_reported() -> None:
    sink = MemoryPublisher()
    router = CandleRouter(sink)

    async def go() -> None:
        await router.on_candle(live(0))
        await router.on_candle(live(2))

    asyncio.run(go())
    assert indexes(sink.candles) == [(0, "stream"), (2, "stream")]
