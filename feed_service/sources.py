"""Where candles come from: a venue live (Binance), a simulator, or a recorded file.

All three end in the same `CandleRouter`, so dedup, gap handling, metrics and the
publisher behave identically whether the market is real or not. The simulator is
also usable on its own (an async iterator of `CandleClosed`) by `cmon demo`, which
drives it in-process with its own publisher.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from feed_service.metrics import FeedMetrics
from feed_service.router import CandleRouter
from feed_service.streams import StreamId
from feed_service.subscriptions import StreamProvider, SubscriptionManager
from feed_service.supervisor import ConnectionPolicy, ShardPool, ShardSupervisor
from feed_service.timing import Sleeper, WallClock
from feed_service.venue import FrameKind, FrameParser, MalformedFrame, Venue
from functions.core import intervals
from functions.core.contracts import CandleClosed, CandleSource, Market

log = logging.getLogger(__name__)

CandleSink = Callable[[CandleClosed], Awaitable[None]]


class LiveFeed:
    """A venue's kline streams, sharded and kept alive, subscriptions refreshed."""

    def __init__(
        self,
        policy: ConnectionPolicy,
        router: CandleRouter,
        venue: Venue,
        *,
        static: frozenset[StreamId],
        max_streams_per_connection: int,
        provider: StreamProvider | None = None,
        refresh_s: float = 30.0,
        metrics: FeedMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        def make_shard(shard_id: int) -> ShardSupervisor:
            return ShardSupervisor(shard_id, policy, router, venue, metrics=metrics, monotonic=monotonic)

        self.pool = ShardPool(max_streams_per_connection, make_shard, router)
        self.subscriptions = SubscriptionManager(self.pool, static, provider=provider, refresh_s=refresh_s)

    async def run(self) -> None:
        """Run until cancelled; raise if a shard supervisor died of a bug."""
        refresher = asyncio.create_task(self.subscriptions.run(), name="subscriptions")
        try:
            while True:
                if refresher.done():
                    refresher.result()  # re-raises a failure; a clean end is fine
                failure = self.pool.failed()
                if failure is not None:
                    raise failure
                await asyncio.sleep(0.5)
        finally:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)
            await self.pool.stop()

    def status(self) -> list[dict[str, Any]]:
        return self.pool.status()


# -- simulator ------------------------------------------------------------------------

_START_PRICES = {
    "BTCUSDT": Decimal("64000"),
    "ETHUSDT": Decimal("3000"),
    "BNBUSDT": Decimal("600"),
    "SOLUSDT": Decimal("150"),
}


def _tick(price: Decimal) -> Decimal:
    if price >= 1000:
        return Decimal("0.01")
    if price >= 1:
        return Decimal("0.0001")
    return Decimal("0.00000001")


@dataclass
class _Walk:
    stream: StreamId
    next_open_ms: int
    price: Decimal


class SimulatedMarket:
    """Synthetic random-walk candles for `streams` on an accelerated clock.

    Simulated time starts at the current wall-clock boundary of the shortest interval
    and runs `speed` times faster than the wall clock: at `speed=60` a `1m` candle
    closes every real second. Candles are yielded in close-time order across streams,
    each at the moment its close is reached in simulated time, so the downstream sees
    the same cadence and ordering as from Binance, only faster.

    In-process use (the lead's `cmon demo`)::

        market = SimulatedMarket([StreamId("BTCUSDT", "1m")], speed=60, seed=7)
        async for candle in market:          # CandleClosed, source="stream"
            await my_publisher.publish(candle)
        # or: await market.run(my_publisher.publish)

    `limit` stops after that many candles; without it the iterator is endless.
    """

    def __init__(
        self,
        streams: Iterable[StreamId],
        *,
        speed: float = 60.0,
        market: Market = Market.SPOT,
        seed: int | None = None,
        limit: int | None = None,
        start_ms: int | None = None,
        volatility: float = 0.001,
        clock: WallClock = time.time,
        sleep: Sleeper = asyncio.sleep,
    ) -> None:
        self.streams = sorted(set(streams))
        if not self.streams:
            raise ValueError("the simulator needs at least one stream")
        if speed <= 0 or not math.isfinite(speed):
            raise ValueError("speed must be a positive number")
        self.speed = speed
        self.market = market
        self.limit = limit
        self._rng = random.Random(seed)
        self._start_ms = start_ms
        self._volatility = volatility
        self._clock = clock
        self._sleep = sleep
        self.emitted = 0

    def __aiter__(self) -> AsyncIterator[CandleClosed]:
        return self.candles()

    async def run(self, sink: CandleSink) -> int:
        """Feed every candle to `sink` (e.g. a publisher's `publish`); return the count."""
        async for candle in self.candles():
            await sink(candle)
        return self.emitted

    async def candles(self) -> AsyncIterator[CandleClosed]:
        real_start = self._clock()
        shortest = min(self.streams, key=lambda s: intervals.interval_ms(s.interval))
        sim_start = (
            self._start_ms
            if self._start_ms is not None
            else intervals.open_time_of(int(real_start * 1000), shortest.interval)
        )
        heap: list[tuple[int, int, _Walk]] = []
        for index, stream in enumerate(self.streams):
            open_ms = intervals.open_time_of(sim_start, stream.interval)
            walk = _Walk(stream, open_ms, _START_PRICES.get(stream.symbol, Decimal("100")))
            heapq.heappush(heap, (intervals.next_open_ms(open_ms, stream.interval), index, walk))
        while self.limit is None or self.emitted < self.limit:
            due_ms, index, walk = heapq.heappop(heap)
            due_real = real_start + (due_ms - sim_start) / 1000 / self.speed
            delay = due_real - self._clock()
            if delay > 0:
                await self._sleep(delay)
            candle = self._candle(walk)
            walk.next_open_ms = intervals.next_open_ms(walk.next_open_ms, walk.stream.interval)
            heapq.heappush(
                heap, (intervals.next_open_ms(walk.next_open_ms, walk.stream.interval), index, walk)
            )
            self.emitted += 1
            yield candle

    def _candle(self, walk: _Walk) -> CandleClosed:
        rng = self._rng
        interval = walk.stream.interval
        minutes = intervals.interval_ms(interval) / 60_000
        sigma = self._volatility * math.sqrt(max(minutes, 1 / 60))
        tick = _tick(walk.price)
        open_ = walk.price

        def q(value: float) -> Decimal:
            return Decimal(repr(max(value, float(tick)))).quantize(tick, ROUND_HALF_EVEN)

        close = q(float(open_) * (1 + rng.gauss(0, sigma)))
        high = max(q(float(max(open_, close)) * (1 + abs(rng.gauss(0, sigma / 2)))), open_, close)
        low = min(q(float(min(open_, close)) * (1 - abs(rng.gauss(0, sigma / 2)))), open_, close)
        walk.price = close
        return CandleClosed(
            market=self.market,
            symbol=walk.stream.symbol,
            interval=interval,
            open_time=intervals.from_ms(walk.next_open_ms),
            close_time=intervals.from_ms(intervals.close_ms(walk.next_open_ms, interval)),
            open=open_,
            high=high,
            low=low,
            close=close,
            volume=Decimal(repr(round(rng.uniform(1, 500) * max(minutes, 0.1), 3))),
            trades=rng.randint(10, 2000),
            source=CandleSource.STREAM,
        )


# -- replay ---------------------------------------------------------------------------


class ReplaySource:
    """Closed candles from a recorded `.jsonl` of frames, read by the venue's `parser`
    (the app passes Binance's `KlineParser`: raw or combined kline frames).

    Frames are replayed as fast as they can be read: a replay is for checking what the
    feed makes of a recording, not for reproducing its timing. Malformed lines are
    logged and counted, like on the wire.
    """

    def __init__(self, path: Path, parser: FrameParser, *, metrics: FeedMetrics | None = None) -> None:
        self.path = path
        self._parser = parser
        self._metrics = metrics
        self.frames = 0
        self.malformed = 0

    def __aiter__(self) -> AsyncIterator[CandleClosed]:
        return self.candles()

    async def candles(self) -> AsyncIterator[CandleClosed]:
        with self.path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                self.frames += 1
                try:
                    frame = self._parser.parse(line)
                except MalformedFrame as e:
                    self.malformed += 1
                    if self._metrics is not None:
                        self._metrics.malformed()
                    log.warning("%s:%d: malformed frame skipped: %s", self.path, number, e)
                    continue
                if frame.kind is FrameKind.CANDLE_CLOSED and frame.candle is not None:
                    yield frame.candle
                if number % 1000 == 0:
                    await asyncio.sleep(0)  # let the publisher and health server run

    async def run(self, sink: CandleSink) -> int:
        count = 0
        async for candle in self.candles():
            await sink(candle)
            count += 1
        return count
