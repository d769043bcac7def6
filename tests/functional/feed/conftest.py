"""Helpers to run the feed in-process against the fake Binance."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from feed_service.app import FeedApp
from feed_service.metrics import FeedMetrics
from feed_service.publisher import MemoryPublisher
from feed_service.settings import FeedSettings
from tests.functional.feed.fake_binance import FakeBinanceWs, FakeKlinesRest


def run(coro: Coroutine[Any, Any, Any], within: float = 30.0) -> Any:
    """Run a scenario with a hard bound, so a bug hangs nothing."""

    async def bounded() -> Any:
        async with asyncio.timeout(within):
            return await coro

    return asyncio.run(bounded())


def feed_settings(ws: FakeBinanceWs, rest: FakeKlinesRest, **overrides: Any) -> FeedSettings:
    values: dict[str, Any] = {
        "binance_market": "spot",
        "binance_ws_url": ws.url,
        "binance_rest_url": rest.url,
        "feed_streams": "BTCUSDT@1m",
        "feed_health_port": -1,
        "feed_backoff_base_s": 0.01,
        "feed_backoff_max_s": 0.05,
        "feed_watchdog_tick_s": 0.01,
        "feed_silence_timeout_s": 30.0,
        "feed_connect_timeout_s": 5.0,
        "feed_max_messages_per_second": 200.0,
        "feed_rest_max_wait_s": 2.0,
        "feed_metrics_interval_s": 3600.0,
        "feed_subscription_refresh_s": 3600.0,
        "database_url": None,
        # Scenarios on the recorded 2021 candles: no "last N closed candles" of today.
        "stale_candle_intervals": 0,
        **overrides,
    }
    return FeedSettings(**values)


@contextlib.asynccontextmanager
async def running_feed(
    settings: FeedSettings,
    **kwargs: Any,
) -> AsyncIterator[tuple[FeedApp, MemoryPublisher]]:
    sink = MemoryPublisher()
    app = FeedApp(settings, sink, metrics=FeedMetrics("test"), **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    await app.started.wait()
    try:
        yield app, sink
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task
    assert sink.closed, "the publisher is closed (flushed) on stop"
