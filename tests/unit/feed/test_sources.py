"""The simulator on a fake clock, and replays of recorded frames."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest

from feed_service.binance import KlineParser
from feed_service.publisher import MemoryPublisher
from feed_service.sources import ReplaySource, SimulatedMarket
from feed_service.streams import StreamId
from functions.core import intervals
from functions.core.contracts import CandleClosed, CandleSource, Market
from tests.unit.feed.frames import EVENTS, dumps, kline


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def test_simulator_accelerated_clock_order_and_shape() -> None:
    clock = FakeClock(1_700_000_012.5)  # mid-minute
    market = SimulatedMarket(
        [StreamId("BTCUSDT", "1m"), StreamId("ETHUSDT", "5m")],
        speed=60,
        seed=1,
        limit=12,
        clock=clock,
        sleep=clock.sleep,
    )

    async def go() -> list[CandleClosed]:
        return [candle async for candle in market]

    candles = asyncio.run(go())
    btc = [c for c in candles if c.symbol == "BTCUSDT"]
    eth = [c for c in candles if c.symbol == "ETHUSDT"]
    start_ms = intervals.open_time_of(1_700_000_012_500, "1m")
    assert intervals.to_ms(btc[0].open_time) == start_ms  # starts at the wall-clock boundary
    opens = [intervals.to_ms(c.open_time) for c in btc]
    assert opens == [start_ms + i * 60_000 for i in range(len(btc))]
    assert (
        len(eth) >= 1
        and intervals.to_ms(eth[0].close_time) + 1 == intervals.open_time_of(start_ms, "5m") + 300_000
    )
    closes = [c.close_time for c in candles]
    assert closes == sorted(closes)  # close-time order across streams
    for before, after in itertools.pairwise(btc):
        assert after.open == before.close  # a continuous random walk
    assert all(c.low <= min(c.open, c.close) and c.high >= max(c.open, c.close) for c in candles)
    assert {c.source for c in candles} == {CandleSource.STREAM}
    # 11 one-minute candles (plus the 5m one in between) at 60x: about 11 real seconds.
    last_close_s = (intervals.to_ms(btc[-1].close_time) + 1) / 1000
    assert clock.now == pytest.approx(1_700_000_012.5 + (last_close_s - start_ms / 1000) / 60)


def test_simulator_is_reproducible_and_drives_a_publisher() -> None:
    def make() -> SimulatedMarket:
        clock = FakeClock(1_700_000_000.0)
        return SimulatedMarket(
            [StreamId("SOLUSDT", "1s")], speed=1, seed=42, limit=5, clock=clock, sleep=clock.sleep
        )

    first, second = MemoryPublisher(), MemoryPublisher()
    assert asyncio.run(make().run(first.publish)) == 5
    asyncio.run(make().run(second.publish))
    assert [c.to_detail() for c in first.candles] == [c.to_detail() for c in second.candles]


def test_simulator_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SimulatedMarket([], speed=60)
    with pytest.raises(ValueError):
        SimulatedMarket([StreamId("BTCUSDT", "1m")], speed=0)


def test_replay_of_the_recording_has_no_closed_candle() -> None:
    replay = ReplaySource(EVENTS / "spot_combined_kline_real_cryptofeed.jsonl", KlineParser(Market.SPOT))
    assert asyncio.run(_collect(replay)) == []
    assert replay.frames == 2 and replay.malformed == 0


def test_replay_keeps_closed_candles_and_skips_malformed_lines(tmp_path: Path) -> None:
    lines = [
        dumps({"stream": "btcusdt@kline_1m", "data": kline(0, closed=False)}),
        dumps(kline(0)),
        "garbage",
        "",
        dumps(kline(1)),
        json.dumps({"stream": "btcusdt@kline_1m", "data": kline(2)}),
    ]
    path = tmp_path / "session.jsonl"
    path.write_text("\n".join(lines) + "\n")
    replay = ReplaySource(path, KlineParser(Market.SPOT))
    candles = asyncio.run(_collect(replay))
    assert [c.close for c in candles] == [type(candles[0].close)(f"{100 + i}.50") for i in range(3)]
    assert replay.malformed == 1 and replay.frames == 5


async def _collect(replay: ReplaySource) -> list[CandleClosed]:
    return [candle async for candle in replay]
