"""Where closed candles go: EventBridge in production, memory or stdout locally.

The sink is a small protocol so `cmon demo`, the local runner and the tests can plug in
their own without touching the feed. The EventBridge writer sits behind a bounded queue:
a slow or failing bus pushes back on the feed (the WebSocket reader waits) instead of
letting memory grow without bound.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TextIO, runtime_checkable

from botocore.exceptions import BotoCoreError, ClientError

from feed_service.metrics import FeedMetrics
from feed_service.timing import Sleeper, WallClock
from functions.core.contracts import DETAIL_TYPE, EVENT_SOURCE, CandleClosed, CandleSource
from functions.core.errors import PublishError
from functions.core.retry import BackoffPolicy

log = logging.getLogger(__name__)

MAX_ENTRIES_PER_PUT = 10


@runtime_checkable
class Publisher(Protocol):
    async def publish(self, candle: CandleClosed) -> None:
        """Hand over one candle; may wait (back-pressure) but must not drop it."""

    async def flush(self) -> None:
        """Return once everything handed over so far has been delivered."""

    async def close(self) -> None:
        """Flush, then release resources; `publish` must not be called afterwards."""


CandleCallback = Callable[[CandleClosed], Awaitable[None] | None]


class CallbackPublisher:
    """Calls a function (sync or async) for every candle, in order."""

    def __init__(self, callback: CandleCallback) -> None:
        self._callback = callback

    async def publish(self, candle: CandleClosed) -> None:
        result = self._callback(candle)
        if inspect.isawaitable(result):
            await result

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


class MemoryPublisher:
    """Keeps every candle in a list; tests wait on `wait_for(n)` instead of sleeping."""

    def __init__(self) -> None:
        self.candles: list[CandleClosed] = []
        self.closed = False
        self._changed = asyncio.Event()

    async def publish(self, candle: CandleClosed) -> None:
        if self.closed:
            raise PublishError("publisher is closed")
        self.candles.append(candle)
        self._changed.set()

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True

    async def wait_for(self, count: int, within_s: float = 10.0) -> list[CandleClosed]:
        """Wait until at least `count` candles arrived; raise TimeoutError otherwise."""
        async with asyncio.timeout(within_s):
            while len(self.candles) < count:
                self._changed.clear()
                await self._changed.wait()
        return list(self.candles)


class StdoutPublisher:
    """Prints each candle's detail as one JSON line (`--sink stdout`, `--dry-run`)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout

    async def publish(self, candle: CandleClosed) -> None:
        print(json.dumps(candle.to_detail(), separators=(",", ":")), file=self._out, flush=True)

    async def flush(self) -> None:
        self._out.flush()

    async def close(self) -> None:
        await self.flush()


class EventBridgePublisher:
    """Batches candles into `PutEvents` calls of 10 and re-sends only failed entries.

    PutEvents is not all-or-nothing: a 200 answer may carry `FailedEntryCount > 0` with
    an `ErrorCode` on some entries (throttling, internal errors). Re-sending the whole
    batch would duplicate the successful ones, so only the failed entries go again,
    after the shared full-jitter backoff (`functions.core.retry`). The boto3 call
    blocks, so it runs in a thread.

    `client` is a boto3 `events` client (or any object with a compatible `put_events`).
    """

    def __init__(
        self,
        client: Any,
        bus_name: str,
        *,
        queue_size: int = 1000,
        metrics: FeedMetrics | None = None,
        backoff_max_s: float = 10.0,
        max_attempts: int | None = None,
        flush_timeout_s: float = 20.0,
        clock: WallClock = time.time,
        sleep: Sleeper = asyncio.sleep,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._bus_name = bus_name
        self._queue: asyncio.Queue[CandleClosed] = asyncio.Queue(maxsize=queue_size)
        self._metrics = metrics
        self._backoff = BackoffPolicy(base_s=min(0.1, backoff_max_s), cap_s=backoff_max_s)
        self._draw = draw
        self._max_attempts = max_attempts
        self._flush_timeout_s = flush_timeout_s
        self._clock = clock
        self._sleep = sleep
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.calls = 0
        self.delivered = 0
        self.given_up = 0

    async def publish(self, candle: CandleClosed) -> None:
        if self._closed:
            raise PublishError("publisher is closed")
        self._ensure_writer()
        await self._queue.put(candle)

    async def flush(self) -> None:
        if self._writer is None:
            return
        joined = asyncio.ensure_future(self._queue.join())
        try:
            await asyncio.wait({joined, self._writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
        if self._writer.done():
            # The writer only ends on cancellation or a bug; surface the latter.
            self._writer.result()

    async def close(self) -> None:
        self._closed = True
        try:
            async with asyncio.timeout(self._flush_timeout_s):
                await self.flush()
        except TimeoutError:
            log.error("EventBridge flush timed out; %d candles not published", self._queue.qsize())
            raise PublishError("flush timed out") from None
        finally:
            if self._writer is not None:
                self._writer.cancel()
                await asyncio.gather(self._writer, return_exceptions=True)

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="eventbridge-writer")

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_ENTRIES_PER_PUT and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._send(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _entry(self, candle: CandleClosed) -> dict[str, Any]:
        return {
            "Source": EVENT_SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": json.dumps(candle.to_detail(), separators=(",", ":")),
            "EventBusName": self._bus_name,
        }

    async def _send(self, batch: list[CandleClosed]) -> None:
        pending = [(candle, self._entry(candle)) for candle in batch]
        attempt = 0
        while pending:
            attempt += 1
            self.calls += 1
            try:
                response = await asyncio.to_thread(
                    self._client.put_events, Entries=[entry for _, entry in pending]
                )
            except (BotoCoreError, ClientError) as e:
                log.warning("PutEvents failed for %d entries (attempt %d): %s", len(pending), attempt, e)
                failed = pending
            else:
                results = response.get("Entries", [])
                if response.get("FailedEntryCount", 0) == 0 and len(results) == len(pending):
                    failed = []
                elif len(results) != len(pending):
                    log.warning(
                        "PutEvents answered %d results for %d entries; resending all",
                        len(results),
                        len(pending),
                    )
                    failed = pending
                else:
                    failed = [p for p, r in zip(pending, results, strict=True) if r.get("ErrorCode")]
                    codes = sorted({str(r["ErrorCode"]) for r in results if r.get("ErrorCode")})
                    log.warning(
                        "PutEvents: %d of %d entries failed (%s), resending them",
                        len(failed),
                        len(pending),
                        ", ".join(codes),
                    )
                failed_ids = {id(p) for p in failed}
                self._delivered([p[0] for p in pending if id(p) not in failed_ids])
            pending = failed
            if not pending:
                return
            if self._max_attempts is not None and attempt >= self._max_attempts:
                self.given_up += len(pending)
                log.error(
                    "PutEvents gave up on %d candles after %d attempts: %s",
                    len(pending),
                    attempt,
                    [f"{c.symbol}@{c.interval}:{c.open_time.isoformat()}" for c, _ in pending],
                )
                return
            await self._sleep(self._backoff.delay(attempt, self._draw()))

    def _delivered(self, candles: list[CandleClosed]) -> None:
        self.delivered += len(candles)
        if self._metrics is not None:
            record_published(self._metrics, candles, self._clock())


def record_published(metrics: FeedMetrics, candles: list[CandleClosed], now: float) -> None:
    """Count delivered candles and their lag behind the candle's close."""
    for candle in candles:
        lag_ms = max(0.0, (now - candle.close_time.timestamp()) * 1000)
        metrics.candle_published(lag_ms, backfill=candle.source is CandleSource.BACKFILL)


class MeteredPublisher:
    """Counts deliveries for sinks that deliver on `publish` (memory, stdout, callbacks).

    The EventBridge publisher counts on its own, after PutEvents accepted the entry, so
    the lag it reports includes the time spent in its queue.
    """

    def __init__(self, inner: Publisher, metrics: FeedMetrics, clock: WallClock = time.time) -> None:
        self.inner = inner
        self._metrics = metrics
        self._clock = clock

    async def publish(self, candle: CandleClosed) -> None:
        await self.inner.publish(candle)
        record_published(self._metrics, [candle], self._clock())

    async def flush(self) -> None:
        await self.inner.flush()

    async def close(self) -> None:
        await self.inner.close()
