"""Clocks and an outgoing-message rate limiter.

Every component takes its clock from here instead of calling `time` directly, so tests
drive candles, staleness and backoff with a fake clock and never sleep for real. The
backoff itself is the codebase's one policy, `functions.core.retry.BackoffPolicy`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

WallClock = Callable[[], float]
"""Seconds since the epoch (`time.time`): candle times are compared against it."""
Sleeper = Callable[[float], Awaitable[None]]


def wall_ms(clock: WallClock) -> int:
    return int(clock() * 1000)


class RateLimiter:
    """Spaces messages we send so a connection never exceeds Binance's incoming limit.

    Binance counts pings, pongs and JSON control messages together (5/s spot, 10/s
    futures) and disconnects a connection that exceeds it; one slot a second is left
    for the pongs websockets sends on its own.
    """

    def __init__(
        self,
        per_second: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleeper = asyncio.sleep,
    ) -> None:
        self._interval = 1.0 / max(per_second - 1.0, per_second / 2)
        self._monotonic = monotonic
        self._sleep = sleep
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = self._monotonic()
            if self._next > now:
                await self._sleep(self._next - now)
                now = self._next
            self._next = now + self._interval
