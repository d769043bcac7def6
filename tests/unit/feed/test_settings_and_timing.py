"""Settings, stream names and the outgoing-message limiter (the backoff: test_backoff.py)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from feed_service.binance import BinanceVenue
from feed_service.settings import FeedSettings
from feed_service.streams import StreamId, parse_streams
from feed_service.timing import RateLimiter
from functions.core.contracts import Market


def test_stream_names() -> None:
    assert StreamId.parse("btcusdt@1m") == StreamId("BTCUSDT", "1m")
    venue = BinanceVenue(Market.SPOT)
    assert venue.stream_name(StreamId.parse("ethusdt@kline_5m")) == "ethusdt@kline_5m"
    assert venue.stream_name(StreamId("BTCUSDT", "1M")) == "btcusdt@kline_1M"
    assert str(StreamId("BTCUSDT", "1h")) == "BTCUSDT@1h"
    assert parse_streams(" BTCUSDT@1m, ,ETHUSDT@5m,BTCUSDT@1m") == [
        StreamId("BTCUSDT", "1m"),
        StreamId("ETHUSDT", "5m"),
    ]
    for bad in ("BTCUSDT", "BTCUSDT@7m", "B@1m", "BTC-USDT@1m"):
        with pytest.raises(ValueError):
            StreamId.parse(bad)


def test_settings_defaults_per_market(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BINANCE_MARKET", "BINANCE_WS_URL", "BINANCE_REST_URL", "FEED_STREAMS"):
        monkeypatch.delenv(name, raising=False)
    spot = FeedSettings()
    assert (spot.ws_url, spot.rest_url) == ("wss://stream.binance.com:9443", "https://api.binance.com")
    assert spot.klines_url == "https://api.binance.com/api/v3/klines"
    assert (spot.max_streams_per_connection, spot.max_messages_per_second, spot.klines_limit) == (
        1024,
        5,
        1000,
    )
    monkeypatch.setenv("BINANCE_MARKET", "usdm")
    monkeypatch.setenv("FEED_STREAMS", "BTCUSDT@1m,ETHUSDT@5m")
    monkeypatch.setenv("BINANCE_REST_URL", "http://127.0.0.1:9/")
    usdm = FeedSettings()
    assert usdm.market is Market.USDM
    assert usdm.ws_url == "wss://fstream.binance.com"
    assert usdm.klines_url == "http://127.0.0.1:9/fapi/v1/klines"
    assert (usdm.max_streams_per_connection, usdm.max_messages_per_second, usdm.klines_limit) == (
        200,
        10,
        1500,
    )
    assert usdm.streams == {StreamId("BTCUSDT", "1m"), StreamId("ETHUSDT", "5m")}
    monkeypatch.setenv("FEED_STREAMS", "BTCUSDT")
    with pytest.raises(ValidationError):
        FeedSettings()


def test_database_url_is_secret() -> None:
    settings = FeedSettings(database_url="postgresql://u:hunter2@db/postgres")
    assert "hunter2" not in repr(settings)


def test_rate_limiter_spaces_messages_below_the_limit() -> None:
    now = [0.0]
    sent: list[float] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    async def go() -> None:
        limiter = RateLimiter(5, monotonic=lambda: now[0], sleep=sleep)
        for _ in range(9):
            await limiter.acquire()
            sent.append(now[0])

    asyncio.run(go())
    # At most 4 a second (one slot of Binance's 5 is left for pongs).
    for i in range(len(sent) - 4):
        assert sent[i + 4] - sent[i] >= 1.0 - 1e-9
