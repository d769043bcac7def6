"""Keeps connections alive: reconnect, watchdog, rotation, sharding.

A `ShardSupervisor` owns the streams of one connection and replaces that connection
whenever it is no longer trustworthy:

- it closed or failed: reconnect after the shared backoff (`functions.core.retry`:
  capped exponential, full jitter, so the shards of many tasks that lost the venue
  together do not come back together);
- it went silent for `silence_timeout_s` (a half-open TCP connection looks exactly
  like a quiet market otherwise): recycle it;
- the venue announced a shutdown (Binance's `serverShutdown`), or the connection is about
  to reach the venue's age cut (Binance: 24 h; `rotation_age_s`): open the
  replacement *first*, and close the old one only once the new one is subscribed, so
  there is no instant without a live connection. The overlap produces duplicate
  candles, which the router drops.

Candles missed while a connection was down: after every connect (the first one too,
so a restarted process catches up) the supervisor asks the router to recover its
streams from REST, in the background so the new connection is read meanwhile; the
router also notices a gap at the next closed candle and backfills it.

A `ShardPool` spreads the subscribed streams over as many shards as the venue's
per-connection stream limit requires.

Venue-neutral: the `Venue` (`feed_service.venue`) names the streams, builds the
requests and parses the frames; this module never imports a venue's own module.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from websockets.exceptions import WebSocketException

from feed_service.connection import Connection, SubscriptionError
from feed_service.metrics import FeedMetrics
from feed_service.router import CandleRouter
from feed_service.streams import StreamId
from feed_service.venue import FrameKind, MalformedFrame, Venue
from functions.core.errors import CmonError
from functions.core.retry import BackoffPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionPolicy:
    ws_url: str
    max_messages_per_second: float = 5.0
    rotation_age_s: float = 23 * 3600.0
    silence_timeout_s: float = 60.0
    watchdog_tick_s: float = 1.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    connect_timeout_s: float = 10.0


class ShardState(StrEnum):
    STARTING = "starting"
    CONNECTED = "connected"
    ROTATING = "rotating"
    BACKOFF = "backoff"
    STOPPED = "stopped"


class _Why(StrEnum):
    CLOSED = "closed"
    SILENT = "silent"
    ROTATE = "rotate"
    SHUTDOWN = "server shutdown"
    STOP = "stop"


class ShardSupervisor:
    def __init__(
        self,
        shard_id: int,
        policy: ConnectionPolicy,
        router: CandleRouter,
        venue: Venue,
        *,
        metrics: FeedMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.shard_id = shard_id
        self._policy = policy
        self._router = router
        self._venue = venue
        self._metrics = metrics
        self._monotonic = monotonic
        self._backoff = BackoffPolicy(base_s=policy.backoff_base_s, cap_s=policy.backoff_max_s)
        self._draw = draw
        # Consecutive failed connects: the backoff's attempt number. Reset by a
        # connection that lived long enough to count as healthy.
        self._failed_connects = 0
        # The waits drawn, oldest first (bounded): what a test reads to check the policy.
        self.backoff_waits: list[float] = []
        self.desired: set[StreamId] = set()
        self.state = ShardState.STARTING
        self.connection: Connection | None = None
        self.connections_opened = 0
        self.reconnects = 0
        self.last_reason: str | None = None
        self._stopping = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._generation = 0
        self._recoveries: set[asyncio.Task[None]] = set()
        self.recoveries_started = 0
        self.recovery_failure: BaseException | None = None

    # -- public -----------------------------------------------------------------------

    async def run(self) -> None:
        """Keep a connection for `desired` until `stop()`."""
        try:
            conn: Connection | None = None
            while not self._stopping.is_set():
                if conn is None:
                    conn = await self._connect_with_backoff()
                    if conn is None:
                        break
                why = await self._watch(conn)
                self.last_reason = str(why)
                if why is _Why.STOP:
                    break
                self._count_reconnect()
                if why in (_Why.ROTATE, _Why.SHUTDOWN):
                    log.info("shard %d: %s, opening the replacement first", self.shard_id, why)
                    self.state = ShardState.ROTATING
                    replacement = await self._connect_with_backoff(old=conn)
                    await conn.close(str(why))
                    conn = replacement
                else:
                    log.warning(
                        "shard %d: connection %s (%s), reconnecting", self.shard_id, why, conn.close_reason
                    )
                    lived = self._monotonic() - conn.opened_at
                    await conn.close(str(why))
                    conn = None
                    if lived >= min(30.0, self._policy.silence_timeout_s):
                        self._failed_connects = 0
            if conn is not None:
                await conn.close("stopping")
            if self.recovery_failure is not None:
                raise self.recovery_failure
        finally:
            for task in self._recoveries:
                task.cancel()
            await asyncio.gather(*self._recoveries, return_exceptions=True)
            if self.connection is not None and self.connection.close_reason is None:
                await self.connection.close("stopping")
            self.state = ShardState.STOPPED

    async def update(self, desired: set[StreamId]) -> None:
        """Change this shard's streams; applied live when a connection is up."""
        self.desired = set(desired)
        conn = self.connection
        if conn is not None and conn.close_reason is None:
            await self._sync(conn)

    def stop(self) -> None:
        self._stopping.set()
        if self.connection is not None:
            self.connection.attention.set()

    def status(self) -> dict[str, Any]:
        conn = self.connection
        return {
            "shard": self.shard_id,
            "state": str(self.state),
            "streams": len(self.desired),
            "connections_opened": self.connections_opened,
            "reconnects": self.reconnects,
            "last_reason": self.last_reason,
            "connection_age_s": None if conn is None else round(self._monotonic() - conn.opened_at, 3),
            "silent_for_s": None if conn is None else round(self._monotonic() - conn.last_message_at, 3),
        }

    # -- internals ----------------------------------------------------------------------

    def _count_reconnect(self) -> None:
        self.reconnects += 1
        if self._metrics is not None:
            self._metrics.reconnected()

    def _wire_names(self) -> set[str]:
        name = self._venue.stream_name
        return {name(stream) for stream in self.desired}

    async def _connect_with_backoff(self, old: Connection | None = None) -> Connection | None:
        """Open and subscribe a new connection, retrying until it works or we stop.

        During a rotation `old` keeps delivering meanwhile; if it dies while we retry,
        nothing changes here: the next candle's gap is backfilled.
        """
        while not self._stopping.is_set():
            self._generation += 1
            conn = Connection(
                f"{self.shard_id}.{self._generation}",
                self._venue,
                self._policy.ws_url,
                self._on_message,
                max_messages_per_second=self._policy.max_messages_per_second,
                ack_timeout_s=self._policy.connect_timeout_s,
                connect_timeout_s=self._policy.connect_timeout_s,
                monotonic=self._monotonic,
            )
            try:
                await conn.open(self._wire_names())
            except (OSError, TimeoutError, WebSocketException, SubscriptionError) as e:
                # WebSocketException covers a refused handshake (e.g. HTTP 429/503).
                await conn.close(f"open failed: {e}")
                if old is None:
                    self.state = ShardState.BACKOFF
                self._failed_connects += 1
                delay = self._backoff.delay(self._failed_connects, self._draw())
                if len(self.backoff_waits) < 1000:
                    self.backoff_waits.append(delay)
                log.warning(
                    "shard %d: connect failed (%s: %s); retrying in %.2f s",
                    self.shard_id,
                    type(e).__name__,
                    e,
                    delay,
                )
                await self._sleep_unless_stopped(delay)
                continue
            except Exception:
                await conn.close("open failed")
                raise
            self.connections_opened += 1
            self.connection = conn
            self.state = ShardState.CONNECTED
            # Streams may have changed while the connection was opening.
            await self._sync(conn)
            self._start_recovery()
            return conn
        return None

    def _start_recovery(self) -> None:
        """Backfill what the streams closed while this shard was not connected."""
        self.recoveries_started += 1
        task = asyncio.create_task(self._recover(set(self.desired)), name=f"recover-{self.shard_id}")
        self._recoveries.add(task)
        task.add_done_callback(self._recovery_done)

    def _recovery_done(self, task: asyncio.Task[None]) -> None:
        self._recoveries.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug, not an outage (those are CmonErrors): stop this shard so the pool
            # reports it and the app exits, instead of losing the error in a task.
            self.recovery_failure = task.exception()
            self.stop()

    async def _recover(self, streams: set[StreamId]) -> None:
        try:
            await self._router.recover(streams)
        except CmonError as e:
            # The publisher refused (e.g. EventBridge down for longer than its retries):
            # the next reconnect or the next gap tries again.
            log.error("shard %d: recovering %d streams failed: %s", self.shard_id, len(streams), e)

    async def _sync(self, conn: Connection) -> None:
        async with self._sync_lock:
            wanted = self._wire_names()
            try:
                await conn.unsubscribe(conn.streams - wanted)
                await conn.subscribe(wanted - conn.streams)
            except SubscriptionError as e:
                # A half-applied change is worse than a fresh connection with the full set.
                log.warning("shard %d: subscription change failed (%s); recycling", self.shard_id, e)
                conn.close_reason = conn.close_reason or f"subscription failed: {e}"
                conn.attention.set()

    async def _watch(self, conn: Connection) -> _Why:
        policy = self._policy
        while True:
            if self._stopping.is_set():
                return _Why.STOP
            if conn.close_reason is not None:
                return _Why.CLOSED
            if conn.shutdown_requested:
                return _Why.SHUTDOWN
            now = self._monotonic()
            if now - conn.opened_at >= policy.rotation_age_s:
                return _Why.ROTATE
            if now - conn.last_message_at >= policy.silence_timeout_s:
                return _Why.SILENT
            conn.attention.clear()
            try:
                async with asyncio.timeout(policy.watchdog_tick_s):
                    await conn.attention.wait()
            except TimeoutError:
                pass

    async def _sleep_unless_stopped(self, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await self._stopping.wait()
        except TimeoutError:
            pass

    async def _on_message(self, conn: Connection, message: str | bytes) -> None:
        try:
            frame = self._venue.parse(message)
        except MalformedFrame as e:
            if self._metrics is not None:
                self._metrics.malformed()
            log.warning("malformed frame on %s skipped: %s", conn.name, e)
            return
        kind = frame.kind
        if kind is FrameKind.CANDLE_OPEN:
            return
        if kind is FrameKind.CANDLE_CLOSED:
            assert frame.candle is not None
            await self._router.on_candle(frame.candle)
        elif kind is FrameKind.RESPONSE:
            assert frame.request_id is not None
            conn.resolve(frame.request_id, frame.error)
        elif kind is FrameKind.SHUTDOWN:
            log.info("serverShutdown on %s", conn.name)
            conn.request_shutdown()


class ShardPool:
    """Assigns streams to shards (connections) of at most `max_streams` each.

    Existing assignments never move: moving a stream would mean unsubscribing it on one
    connection and subscribing it on another, with a window where it is on neither.
    """

    def __init__(
        self, max_streams: int, make_shard: Callable[[int], ShardSupervisor], router: CandleRouter
    ) -> None:
        self._max_streams = max_streams
        self._make_shard = make_shard
        self._router = router
        self.shards: dict[int, ShardSupervisor] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._next_id = 0

    @property
    def streams(self) -> set[StreamId]:
        return set().union(*(shard.desired for shard in self.shards.values()))

    async def apply(self, desired: set[StreamId]) -> None:
        current = self.streams
        added = sorted(desired - current)
        removed = current - desired
        changed: dict[int, set[StreamId]] = {}
        for shard_id, shard in self.shards.items():
            if shard.desired & removed:
                changed[shard_id] = shard.desired - removed
        for stream in added:
            target = next(
                (
                    sid
                    for sid in sorted(self.shards)
                    if len(changed.get(sid, self.shards[sid].desired)) < self._max_streams
                ),
                None,
            )
            if target is None:
                target = self._start_shard()
            changed.setdefault(target, set(self.shards[target].desired)).add(stream)
            self._router.expect(stream)
        for shard_id, streams in changed.items():
            shard = self.shards[shard_id]
            if not streams:
                await self._stop_shard(shard_id)
            else:
                await shard.update(streams)
        for stream in removed:
            self._router.forget(stream)
        if added or removed:
            log.info(
                "subscriptions: +%d -%d, %d streams on %d connections",
                len(added),
                len(removed),
                len(desired),
                len(self.shards),
            )

    def _start_shard(self) -> int:
        shard_id = self._next_id
        self._next_id += 1
        shard = self._make_shard(shard_id)
        self.shards[shard_id] = shard
        self._tasks[shard_id] = asyncio.create_task(shard.run(), name=f"shard-{shard_id}")
        return shard_id

    async def _stop_shard(self, shard_id: int) -> None:
        shard = self.shards.pop(shard_id)
        shard.stop()
        task = self._tasks.pop(shard_id)
        await task

    async def stop(self) -> None:
        for shard in self.shards.values():
            shard.stop()
        tasks = list(self._tasks.values())
        self.shards.clear()
        self._tasks.clear()
        for task in tasks:
            await task

    def failed(self) -> BaseException | None:
        """The exception of a shard task that died (a bug), so the app can stop."""
        for task in self._tasks.values():
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    def status(self) -> list[dict[str, Any]]:
        return [shard.status() for shard in self.shards.values()]
