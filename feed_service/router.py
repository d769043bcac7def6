"""From closed candles to the publisher: deduplication and gap backfill, per stream.

Every source (live connections, the simulator, a replay) hands its closed candles to
one `CandleRouter`. Per stream it remembers only the last open time published, which is
enough because it publishes each stream strictly in order: anything at or before that
open time is a repeat (the closing frame sent twice, two connections overlapping during
a rotation) and is dropped; anything after the expected next open time means candles
were missed, and those are fetched from REST and published first. Memory stays one
small record per subscribed stream, however long the process runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from feed_service.binance import BackfillError, MalformedFrame
from feed_service.metrics import FeedMetrics
from feed_service.publisher import Publisher
from feed_service.streams import StreamId
from feed_service.timing import WallClock
from functions.core import intervals
from functions.core.contracts import CandleClosed

log = logging.getLogger(__name__)


def epoch_ms(moment: datetime) -> int:
    """`intervals.to_ms` for the aware datetimes of a candle, ~4x cheaper on the hot path
    (a double holds today's epoch milliseconds exactly, so rounding restores them)."""
    return round(moment.timestamp() * 1000)


class Backfiller(Protocol):
    async def fetch(self, stream: StreamId, start_ms: int, end_ms: int) -> list[CandleClosed]:
        """Closed candles of `stream` opening in [start_ms, end_ms], oldest first."""


@dataclass
class StreamState:
    stream: StreamId
    since: float
    last_open_ms: int | None = None
    last_close_ms: int | None = None
    published: int = 0
    backfilled: int = 0
    duplicates: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class CandleRouter:
    def __init__(
        self,
        publisher: Publisher,
        *,
        backfiller: Backfiller | None = None,
        metrics: FeedMetrics | None = None,
        clock: WallClock = time.time,
        max_backfill: int = 1000,
    ) -> None:
        self.publisher = publisher
        self._backfiller = backfiller
        self._metrics = metrics
        self._clock = clock
        self._max_backfill = max_backfill
        # Keyed by (symbol, interval) tuples: hashing a tuple is cheaper than a dataclass.
        self._states: dict[tuple[str, str], StreamState] = {}
        self.backfill_failures = 0

    def expect(self, stream: StreamId) -> None:
        """Start watching a stream (health counts its staleness from now)."""
        key = (stream.symbol, stream.interval)
        if key not in self._states:
            self._states[key] = StreamState(stream, since=self._clock())

    def forget(self, stream: StreamId) -> None:
        """Drop an unsubscribed stream, so a later re-subscription starts afresh instead
        of backfilling the whole time it was away."""
        self._states.pop((stream.symbol, stream.interval), None)

    def states(self) -> dict[StreamId, StreamState]:
        return {state.stream: state for state in self._states.values()}

    async def on_candle(self, candle: CandleClosed) -> None:
        key = (candle.symbol, candle.interval)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = StreamState(StreamId(*key), since=self._clock())
        stream = state.stream
        async with state.lock:
            open_ms = epoch_ms(candle.open_time)
            if state.last_open_ms is not None and open_ms <= state.last_open_ms:
                state.duplicates += 1
                if self._metrics is not None:
                    self._metrics.duplicate_dropped()
                if open_ms < state.last_open_ms:
                    log.info(
                        "late candle %s %s dropped (already past it)", stream, candle.open_time.isoformat()
                    )
                return
            if state.last_open_ms is not None:
                expected = intervals.next_open_ms(state.last_open_ms, stream.interval)
                if open_ms > expected:
                    await self._backfill(stream, state, expected, open_ms - 1)
            await self.publisher.publish(candle)
            self._advance(state, candle, open_ms)
            state.published += 1

    @staticmethod
    def _advance(state: StreamState, candle: CandleClosed, open_ms: int) -> None:
        state.last_open_ms = open_ms
        state.last_close_ms = epoch_ms(candle.close_time)

    async def _backfill(self, stream: StreamId, state: StreamState, start_ms: int, end_ms: int) -> None:
        if self._backfiller is None:
            log.warning(
                "gap in %s from %s, no backfill source: candles lost",
                stream,
                intervals.from_ms(start_ms).isoformat(),
            )
            return
        if stream.interval != "1M":
            length = intervals.interval_ms(stream.interval)
            missing = (end_ms - start_ms) // length + 1
            if missing > self._max_backfill:
                # Old candles are worth little to a monitor that reacts to the latest
                # close; the newest ones are the ones a workflow is waiting for.
                log.warning(
                    "gap in %s of %d candles; backfilling the last %d", stream, missing, self._max_backfill
                )
                start_ms = end_ms + 1 - self._max_backfill * length
        try:
            candles = await self._backfiller.fetch(stream, start_ms, end_ms)
        except (BackfillError, MalformedFrame) as e:
            self.backfill_failures += 1
            log.error(
                "backfill of %s from %s failed, candles lost: %s",
                stream,
                intervals.from_ms(start_ms).isoformat(),
                e,
            )
            return
        for candle in candles:
            open_ms = epoch_ms(candle.open_time)
            if state.last_open_ms is not None and open_ms <= state.last_open_ms:
                continue
            await self.publisher.publish(candle)
            self._advance(state, candle, open_ms)
            state.backfilled += 1
        log.info("backfilled %d candles of %s", len(candles), stream)
