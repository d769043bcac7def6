"""The feed retries on the codebase's one policy (`functions.core.retry.BackoffPolicy`):
full jitter, the n-th wait a draw in [0, min(cap, base * 2^(n-1))].

Property-tested where the feed draws its waits: the supervisor's reconnects (against a
loopback port that refuses connections) and the REST backfill's retries.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feed_service.binance import BackfillError, BinanceVenue, KlinesClient
from feed_service.publisher import MemoryPublisher
from feed_service.router import CandleRouter
from feed_service.streams import StreamId
from feed_service.supervisor import ConnectionPolicy, ShardSupervisor
from functions.core.contracts import Market
from functions.core.retry import BackoffPolicy

draws = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=8)


def ceiling(base: float, cap: float, attempt: int) -> float:
    return min(cap, base * 2 ** (attempt - 1))


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def supervisor_waits(values: list[float], count: int, base: float, cap: float) -> list[float]:
    """The first `count` reconnect waits of a shard whose every connect is refused."""
    source: Iterator[float] = itertools.cycle(values)
    policy = ConnectionPolicy(
        ws_url=f"ws://127.0.0.1:{refused_port()}",
        backoff_base_s=base,
        backoff_max_s=cap,
        watchdog_tick_s=0.01,
        connect_timeout_s=2.0,
    )
    shard = ShardSupervisor(
        0, policy, CandleRouter(MemoryPublisher()), BinanceVenue(Market.SPOT), draw=lambda: next(source)
    )

    async def go() -> list[float]:
        await shard.update({StreamId("BTCUSDT", "1m")})
        task = asyncio.create_task(shard.run())
        async with asyncio.timeout(20):
            while len(shard.backoff_waits) < count:  # noqa: ASYNC110 - bounded by the timeout
                await asyncio.sleep(0.001)
        shard.stop()
        await task
        return shard.backoff_waits[:count]

    return asyncio.run(go())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=draws)
def test_reconnect_waits_are_full_jitter_within_the_capped_exponential_bound(values: list[float]) -> None:
    base, cap = 0.0005, 0.004
    waits = supervisor_waits(values, 6, base, cap)
    for attempt, (wait, draw) in enumerate(zip(waits, itertools.cycle(values), strict=False), start=1):
        assert 0.0 <= wait <= ceiling(base, cap, attempt)
        assert wait == ceiling(base, cap, attempt) * draw


def test_reconnect_waits_at_the_top_of_the_window_double_up_to_the_cap() -> None:
    assert supervisor_waits([1.0], 5, 0.0005, 0.004) == [0.0005, 0.001, 0.002, 0.004, 0.004]
    # The bottom of the window is zero: no floor at half the ceiling any more.
    assert supervisor_waits([0.0], 3, 0.0005, 0.004) == [0.0, 0.0, 0.0]


@settings(max_examples=50, deadline=None)
@given(values=draws)
def test_rest_backfill_waits_are_full_jitter_within_the_bound(values: list[float]) -> None:
    source = itertools.cycle(values)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def go() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(503)))
        rest = KlinesClient(
            "https://api.binance.test/api/v3/klines",
            Market.SPOT,
            limit=1000,
            http=http,
            max_attempts=6,
            backoff=BackoffPolicy(base_s=0.1, cap_s=1.0),
            draw=lambda: next(source),
            sleep=sleep,
        )
        async with http:
            with pytest.raises(BackfillError, match="after 6 attempts"):
                await rest.fetch(StreamId("BTCUSDT", "1m"), 0, 0)

    asyncio.run(go())
    assert len(sleeps) == 6
    for attempt, (wait, draw) in enumerate(zip(sleeps, itertools.cycle(values), strict=False), start=1):
        assert 0.0 <= wait <= ceiling(0.1, 1.0, attempt)
        assert wait == ceiling(0.1, 1.0, attempt) * draw
