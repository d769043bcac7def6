"""From closed candles to the publisher: deduplication and gap backfill, per stream.

Every source (live connections, the simulator, a replay) hands its closed candles to
one `CandleRouter`. Per stream it remembers only the last open time published, which is
enough because it publishes each stream strictly in order: anything at or before that
open time is a repeat (the closing frame sent twice, two connections overlapping during
a rotation) and is dropped; anything after the expected next open time means candles
were missed, and those are fetched from REST and published first. Memory stays one
small record per subscribed stream, however long the process runs.

That memory dies with the process. So with `recover_intervals` = N (the functions'
`STALE_CANDLE_INTERVALS`), a stream the router has not published yet starts from "the
last N closed candles": `recover()` (called at start and after every reconnect) fetches
them from REST, and if a live close comes first, the same window is backfilled before
it. A restarted or replaced task therefore republishes the window — duplicates are
harmless downstream — instead of losing what closed while it was down; anything older
than the window would be skipped as stale by the fan-out anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from feed_service.metrics import FeedMetrics
from feed_service.publisher import Publisher
from feed_service.streams import StreamId
from feed_service.timing import WallClock, wall_ms
from feed_service.venue import BackfillError, MalformedFrame
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
    # Open time to recover from while nothing is published yet (None: no recovery).
    recover_from_ms: int | None = None
    # The interval's length, for the next expected open time (0: `1M`, months vary).
    step_ms: int = 0
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
        recover_intervals: int = 0,
        recover_concurrency: int = 4,
    ) -> None:
        self.publisher = publisher
        self._backfiller = backfiller
        self._metrics = metrics
        self._clock = clock
        self._max_backfill = max_backfill
        self._recover_intervals = recover_intervals if backfiller is not None else 0
        self._recover_limit = asyncio.Semaphore(max(1, recover_concurrency))
        # Keyed by (symbol, interval) tuples: hashing a tuple is cheaper than a dataclass.
        self._states: dict[tuple[str, str], StreamState] = {}
        self.backfill_failures = 0

    def expect(self, stream: StreamId) -> None:
        """Start watching a stream (health counts its staleness from now)."""
        self._state(stream)

    def _state(self, stream: StreamId) -> StreamState:
        key = (stream.symbol, stream.interval)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = StreamState(
                stream,
                since=self._clock(),
                step_ms=0 if stream.interval == "1M" else intervals.interval_ms(stream.interval),
            )
            if self._recover_intervals > 0:
                state.recover_from_ms = self.window_start_ms(stream)
        return state

    def window_start_ms(self, stream: StreamId) -> int:
        """Open time of the oldest of the last `recover_intervals` closed candles."""
        start = intervals.open_time_of(wall_ms(self._clock), stream.interval)
        for _ in range(self._recover_intervals):
            start = intervals.open_time_of(start - 1, stream.interval)
        return start

    async def recover(self, streams: Iterable[StreamId]) -> None:
        """Publish what each stream closed while we were not listening: since its last
        published candle, or the last `recover_intervals` closed candles if it has none.

        Called at start and after every (re)connect; a stream that is up to date costs
        no REST call. Backfill failures are logged and counted, like gaps."""
        if self._recover_intervals <= 0:
            return
        await asyncio.gather(*(self._recover_one(stream) for stream in streams))

    async def _recover_one(self, stream: StreamId) -> None:
        async with self._recover_limit:
            state = self._state(stream)
            async with state.lock:
                if state.last_open_ms is not None:
                    start = intervals.next_open_ms(state.last_open_ms, stream.interval)
                else:
                    start = (
                        state.recover_from_ms
                        if state.recover_from_ms is not None
                        else self.window_start_ms(stream)
                    )
                end = intervals.open_time_of(wall_ms(self._clock), stream.interval) - 1
                if start <= end:
                    await self._backfill(stream, state, start, end)

    def forget(self, stream: StreamId) -> None:
        """Drop an unsubscribed stream, so a later re-subscription starts afresh instead
        of backfilling the whole time it was away."""
        self._states.pop((stream.symbol, stream.interval), None)

    def states(self) -> dict[StreamId, StreamState]:
        return {state.stream: state for state in self._states.values()}

    async def on_candle(self, candle: CandleClosed) -> None:
        """Publish `candle` unless it repeats one already published, after backfilling
        what a gap before it left out.

        The hot path of every closed candle (and of the backfill after a reconnect), so
        the per-stream lock is taken without `async with` (two coroutines fewer), the
        next open time comes from the interval length kept in the state, and the epoch
        milliseconds are computed inline."""
        key = (candle.symbol, candle.interval)
        state = self._states.get(key)
        if state is None:
            state = self._state(StreamId(*key))
        lock = state.lock
        await lock.acquire()
        try:
            open_ms = round(candle.open_time.timestamp() * 1000)  # epoch_ms, inline
            last = state.last_open_ms
            if last is not None and open_ms <= last:
                state.duplicates += 1
                if self._metrics is not None:
                    self._metrics.duplicate_dropped()
                if open_ms < last:
                    log.info(
                        "late candle %s %s dropped (already past it)",
                        state.stream,
                        candle.open_time.isoformat(),
                    )
                return
            if last is not None:
                step = state.step_ms
                expected: int | None = (
                    last + step if step else intervals.next_open_ms(last, state.stream.interval)
                )
            else:
                expected = state.recover_from_ms  # the first candle since (re)start
            if expected is not None and open_ms > expected:
                await self._backfill(state.stream, state, expected, open_ms - 1)
            await self.publisher.publish(candle)
            state.last_open_ms = open_ms
            state.last_close_ms = round(candle.close_time.timestamp() * 1000)
            state.published += 1
        finally:
            lock.release()

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
