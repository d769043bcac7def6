"""The live feed against a fake Binance on loopback (real websockets, real HTTP).

Assertions are on counts and orderings; every wait is on a condition with a bound.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from feed_service.streams import StreamId
from functions.core import intervals
from functions.core.contracts import CandleClosed
from functions.core.telemetry import MetricName
from tests.functional.feed.conftest import feed_settings, run, running_feed
from tests.functional.feed.fake_binance import FakeBinanceWs, FakeKlinesRest, wait_until
from tests.unit.feed.frames import (
    BASE_MS,
    dumps,
    kline,
    recorded_frames,
    rest_row,
    shutdown_frame,
    wire_name,
)

BTC = wire_name("BTCUSDT", "1m")
ETH = wire_name("ETHUSDT", "1m")


def index_of(candle: CandleClosed, interval: str = "1m") -> int:
    return (intervals.to_ms(candle.open_time) - BASE_MS) // intervals.interval_ms(interval)


def summary(candles: list[CandleClosed]) -> list[tuple[str, int, str]]:
    return [(c.symbol, index_of(c), c.source.value) for c in candles]


def test_every_closed_candle_is_published_exactly_once_and_no_open_one() -> None:
    async def scenario() -> None:
        async with FakeBinanceWs() as ws:
            with FakeKlinesRest() as rest:
                settings = feed_settings(ws, rest, feed_streams="BTCUSDT@1m,ETHUSDT@1m")
                async with running_feed(settings) as (app, sink):
                    conn = await ws.wait_conn(0, {BTC, ETH})
                    for line in recorded_frames():  # real open frames of other streams
                        await ws.send(conn, line)
                    for i in range(5):
                        for symbol in ("BTCUSDT", "ETHUSDT"):
                            await ws.send(conn, kline(i, symbol=symbol, closed=False, price_index=i + 7))
                            await ws.send(conn, kline(i, symbol=symbol, closed=False))
                            await ws.send(conn, kline(i, symbol=symbol, closed=True))
                            # Binance may repeat the closing frame.
                            await ws.send(conn, kline(i, symbol=symbol, closed=True))
                    await ws.send(conn, kline(5, closed=True))  # a marker: all before it read
                    await sink.wait_for(11)
                    dropped = app.metrics.totals[MetricName.FEED_DUPLICATES_DROPPED]
                    published = app.metrics.totals[MetricName.FEED_CANDLES_PUBLISHED]
                assert [s for s in summary(sink.candles) if s[0] == "BTCUSDT"] == [
                    ("BTCUSDT", i, "stream") for i in range(6)
                ]
                assert [s for s in summary(sink.candles) if s[0] == "ETHUSDT"] == [
                    ("ETHUSDT", i, "stream") for i in range(5)
                ]
                assert len(sink.candles) == 11
                assert dropped == 10
                assert published == 11
                assert rest.requests == []
                first = sink.candles[0]
                assert (first.open, first.high, first.low, first.close) == tuple(
                    map(type(first.open), ("100.10", "101.00", "99.50", "100.50"))
                )

    run(scenario())


@pytest.mark.parametrize("throttled", [False, True], ids=["plain", "after-429s"])
def test_dropped_connection_gap_is_backfilled_in_order_before_the_next_live_candle(throttled: bool) -> None:
    async def scenario() -> None:
        async with FakeBinanceWs() as ws:
            with FakeKlinesRest() as rest:
                rest.rows[("BTCUSDT", "1m")] = [rest_row(i) for i in range(8)]
                if throttled:
                    rest.failures = [(429, "0"), (429, "0.05")]
                async with running_feed(feed_settings(ws, rest)) as (app, sink):
                    conn = await ws.wait_conn(0, {BTC})
                    for i in (0, 1):
                        await ws.send(conn, kline(i, closed=False))
                        await ws.send(conn, kline(i, closed=True))
                    await sink.wait_for(2)
                    await ws.drop(conn)
                    # Candles 2 and 3 close while we are away; the new connection sees 4.
                    conn = await ws.wait_conn(1, {BTC})
                    await ws.send(conn, kline(4, closed=False))
                    await ws.send(conn, kline(4, closed=True))
                    await ws.send(conn, kline(4, closed=True))
                    await ws.send(conn, kline(5, closed=True))
                    await sink.wait_for(6)
                    reconnects = app.metrics.totals[MetricName.FEED_RECONNECTS]
                    backfilled = app.metrics.totals[MetricName.FEED_CANDLES_BACKFILLED]
                assert summary(sink.candles) == [
                    ("BTCUSDT", 0, "stream"),
                    ("BTCUSDT", 1, "stream"),
                    ("BTCUSDT", 2, "backfill"),
                    ("BTCUSDT", 3, "backfill"),
                    ("BTCUSDT", 4, "stream"),
                    ("BTCUSDT", 5, "stream"),
                ]
                assert sink.candles[2].close == type(sink.candles[2].close)("102.50")
                assert reconnects == 1
                assert backfilled == 2
                assert rest.statuses == ([429, 429, 200] if throttled else [200])
                request = rest.requests[-1]
                assert request["path"] == "/api/v3/klines"
                assert (int(request["startTime"]), int(request["endTime"])) == (
                    BASE_MS + 2 * 60_000,
                    BASE_MS + 4 * 60_000 - 1,
                )
                assert request["limit"] == "1000"

    run(scenario())


def test_backfill_ban_does_not_stop_the_live_stream(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with FakeBinanceWs() as ws:
            with FakeKlinesRest() as rest:
                rest.rows[("BTCUSDT", "1m")] = [rest_row(i) for i in range(8)]
                rest.failures = [(418, "3600")]
                async with running_feed(feed_settings(ws, rest)) as (_, sink):
                    conn = await ws.wait_conn(0, {BTC})
                    await ws.send(conn, kline(0))
                    await ws.send(conn, kline(3))
                    await ws.send(conn, kline(4))
                    await ws.send(conn, kline(6))  # banned: no REST call at all
                    await sink.wait_for(4)
                assert summary(sink.candles) == [("BTCUSDT", i, "stream") for i in (0, 3, 4, 6)]
                assert rest.statuses == [418]

    with caplog.at_level(logging.ERROR, logger="feed_service"):
        run(scenario())
    assert any("banned" in r.getMessage() for r in caplog.records)


def test_refused_handshakes_and_refused_connections_are_retried() -> None:
    async def scenario() -> None:
        async with FakeBinanceWs() as ws:
            ws.refuse_handshakes = 3
            with FakeKlinesRest() as rest:
                async with running_feed(feed_settings(ws, rest)) as (app, sink):
                    conn = await ws.wait_conn(0, {BTC})
                    await ws.send(conn, kline(0))
                    await sink.wait_for(1)
                    shard = app.report()[1]["connections"][0]
                assert ws.refused == 3
                assert shard["connections_opened"] == 1
                assert summary(sink.candles) == [("BTCUSDT", 0, "stream")]

    run(scenario())


def test_silent_connection_is_recycled_by_the_watchdog() -> None:
    async def scenario() -> None:
        async with FakeBinanceWs() as ws:
            with FakeKlinesRest() as rest:
                rest.rows[("BTCUSDT", "1m")] = [rest_row(i) for i in range(8)]
                settings = feed_settings(ws, rest, feed_silence_timeout_s=0.3)
                async with running_feed(settings) as (app, sink):
                    conn = await ws.wait_conn(0, {BTC})
                    await ws.send(conn, kline(0))
                    await sink.wait_for(1)
                    # Say nothing more on connection 0: the feed must give up on it.
                    second = await ws.wait_conn(1, {BTC})
                    keepalive = asyncio.create_task(_keep_talking(ws, second))
                    await wait_until(lambda: conn.closed, what="silent connection closed")
                    await ws.send(second, kline(1))
                    await ws.send(second, kline(2))
                    await sink.wait_for(3)
                    keepalive.cancel()
                    reconnects = app.metrics.totals[MetricName.FEED_RECONNECTS]
                assert summary(sink.candles) == [("BTCUSDT", i, "stream") for i in range(3)]
                assert reconnects >= 1
                assert rest.requests == []

    run(scenario())


async def _keep_talking(ws: FakeBinanceWs, conn: Any) -> None:
    """Open-candle updates, as Binance sends every 2 s, so the watchdog stays calm."""
    while not conn.closed:
        await ws.send(conn, kline(99, closed=False))
        await asyncio.sleep(0.03)


def test_server_shutdown_moves_to_a_new_connection_first_and_loses_nothing() -> None:
    async def scenario() -> None:
        async with FakeBinanceWs() as ws:
            with FakeKlinesRest() as rest:
                async with running_feed(feed_settings(ws, rest)) as (app, sink):
                    old = await ws.wait_conn(0, {BTC})
                    await ws.send(old, kline(0))
                    await sink.wait_for(1)
                    await ws.send(old, shutdown_frame(combined_form=False))
                    await ws.wait_conn(1, {BTC})
                    # Both connections carry candle 1 while they overlap.
                    copies = await ws.broadcast(kline(1))
                    await sink.wait_for(2)
                    await wait_until(lambda: old.closed, what="old connection closed")
                    await ws.broadcast(kline(2))
                    await sink.wait_for(3)
                    duplicates = app.metrics.totals[MetricName.FEED_DUPLICATES_DROPPED]
                assert duplicates == copies - 1
                assert summary(sink.candles) == [("BTCUSDT", i, "stream") for i in range(3)]
                assert ws.events.index(("open", 1)) < ws.events.index(("close", 0))
                assert rest.requests == []

    run(scenario())


def test_rotation_before_the_24h_cut_loses_and_duplicates_nothing() -> None:
    async def scenario() -> None:
        async with FakeBinanceWs() as ws:
            with FakeKlinesRest() as rest:
                settings = feed_settings(ws, rest, feed_rotation_age_s=0.25)
                async with running_feed(settings) as (app, sink):
                    await ws.wait_conn(0, {BTC})
                    index = 0
                    while len(ws.conns) < 4:  # at least three rotations
                        await ws.broadcast(kline(index, closed=False))
                        await ws.broadcast(kline(index, closed=True))
                        index += 1
                        await asyncio.sleep(0.01)
                    await sink.wait_for(index)
                    reconnects = app.metrics.totals[MetricName.FEED_RECONNECTS]
                assert summary(sink.candles) == [("BTCUSDT", i, "stream") for i in range(index)]
                assert rest.requests == []
                assert reconnects >= 3
                for n in range(1, 4):
                    assert ws.events.index(("open", n)) < ws.events.index(("close", n - 1))

    run(scenario())


def test_streams_are_sharded_and_subscriptions_follow_the_provider() -> None:
    wanted: set[StreamId] = {StreamId("ETHUSDT", "1m"), StreamId("BNBUSDT", "1m")}

    async def provider() -> set[StreamId]:
        return set(wanted)

    async def scenario() -> None:
        nonlocal wanted
        async with FakeBinanceWs() as ws:
            with FakeKlinesRest() as rest:
                settings = feed_settings(
                    ws, rest, feed_max_streams_per_connection=2, feed_subscription_refresh_s=0.05
                )
                async with running_feed(settings, provider=provider) as (app, sink):
                    await wait_until(
                        lambda: _subscribed(ws) == {BTC, ETH, wire_name("BNBUSDT", "1m")},
                        what="first subscriptions",
                    )
                    wanted = {
                        StreamId("ETHUSDT", "1m"),
                        StreamId("SOLUSDT", "1m"),
                        StreamId("XRPUSDT", "1m"),
                        StreamId("ADAUSDT", "5m"),
                    }
                    expected = {BTC, ETH} | {
                        wire_name(s, i) for s, i in (("SOLUSDT", "1m"), ("XRPUSDT", "1m"), ("ADAUSDT", "5m"))
                    }
                    await wait_until(
                        lambda: _subscribed(ws) == expected, what="subscriptions follow the provider"
                    )
                    for conn in ws.open_conns():
                        assert len(conn.streams) <= 2
                    ada = next(c for c in ws.open_conns() if wire_name("ADAUSDT", "5m") in c.streams)
                    await ws.send(ada, kline(0, symbol="ADAUSDT", interval="5m"))
                    await sink.wait_for(1)
                    health = app.report()[1]
                    open_conns = len(ws.open_conns())
                methods = [r["method"] for c in ws.conns for r in c.requests]
                assert "UNSUBSCRIBE" in methods and "SUBSCRIBE" in methods
                assert sink.candles[0].symbol == "ADAUSDT"
                assert "BNBUSDT@1m" not in health["streams"]
                assert len(health["connections"]) == open_conns == 3
                assert rest.requests == []

    run(scenario())


def _subscribed(ws: FakeBinanceWs) -> set[str]:
    return set().union(*(c.streams for c in ws.open_conns()))


def test_malformed_frames_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    bad_kline = kline(1)
    del bad_kline["k"]["o"]
    incoherent = kline(2)
    incoherent["k"]["h"] = "1.00"  # high below low
    frames = ["not json", "[1, 2, 3]", dumps({"stream": BTC, "data": 7}), dumps(bad_kline), dumps(incoherent)]

    async def scenario() -> int:
        async with FakeBinanceWs() as ws:
            with FakeKlinesRest() as rest:
                async with running_feed(feed_settings(ws, rest)) as (app, sink):
                    conn = await ws.wait_conn(0, {BTC})
                    await ws.send(conn, kline(0))
                    for frame in frames:
                        await ws.send(conn, frame)
                    await ws.send(conn, kline(1))
                    await sink.wait_for(2)
                    malformed = app.metrics.malformed_frames
                    connections = len(ws.conns)
                assert summary(sink.candles) == [("BTCUSDT", 0, "stream"), ("BTCUSDT", 1, "stream")]
                assert connections == 1
                return malformed

    with caplog.at_level(logging.WARNING, logger="feed_service"):
        malformed = run(scenario())
    assert malformed == len(frames)
    assert sum("malformed frame" in r.getMessage() for r in caplog.records) == len(frames)


def test_health_endpoint_reports_staleness() -> None:
    now = [BASE_MS / 1000 + 61.0]

    def clock() -> float:
        return now[0]

    async def scenario() -> None:
        async with FakeBinanceWs() as ws:
            with FakeKlinesRest() as rest:
                settings = feed_settings(
                    ws,
                    rest,
                    feed_health_port=0,
                    feed_health_host="127.0.0.1",
                    feed_stale_after_intervals=2,
                    feed_stale_grace_s=30,
                )
                async with running_feed(settings, clock=clock) as (app, sink):
                    assert app.health is not None
                    url = f"http://127.0.0.1:{app.health.port}/health"
                    conn = await ws.wait_conn(0, {BTC})
                    await ws.send(conn, kline(0))
                    await sink.wait_for(1)
                    async with httpx.AsyncClient() as client:
                        fresh = await client.get(url)
                        now[0] += 600  # ten minutes without a candle
                        stale = await client.get(url)
                        missing = await client.get(url.replace("/health", "/nope"))
                assert fresh.status_code == 200
                body = fresh.json()
                assert body["status"] == "ok"
                assert body["streams"]["BTCUSDT@1m"]["last_close_age_s"] == pytest.approx(1.0, abs=0.01)
                assert body["connections"][0]["state"] == "connected"
                assert stale.status_code == 503
                assert stale.json()["streams"]["BTCUSDT@1m"]["stale"] is True
                assert missing.status_code == 404

    run(scenario())


def test_health_over_http_is_200_degraded_with_one_quiet_stream_and_503_only_with_none_served() -> None:
    now = [BASE_MS / 1000 + 61.0]

    async def scenario() -> None:
        async with FakeBinanceWs() as ws:
            with FakeKlinesRest() as rest:
                settings = feed_settings(
                    ws,
                    rest,
                    feed_streams="BTCUSDT@1m,ETHUSDT@1m",
                    feed_health_port=0,
                    feed_health_host="127.0.0.1",
                )
                async with running_feed(settings, clock=lambda: now[0]) as (app, sink):
                    assert app.health is not None
                    url = f"http://127.0.0.1:{app.health.port}/health"
                    conn = await ws.wait_conn(0, {BTC, ETH})
                    now[0] += 200  # ETH never closes (delisted, say)
                    await ws.send(conn, kline(3))
                    await sink.wait_for(1)
                    async with httpx.AsyncClient() as client:
                        one_quiet = await client.get(url)
                        now[0] += 600
                        none_served = await client.get(url)
                assert one_quiet.status_code == 200
                body = one_quiet.json()
                assert body["status"] == "degraded"
                assert body["streams"]["ETHUSDT@1m"]["status"] == "degraded"
                assert body["streams"]["BTCUSDT@1m"]["status"] == "ok"
                assert none_served.status_code == 503
                assert none_served.json()["status"] == "unhealthy"

    run(scenario())
