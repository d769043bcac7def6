"""EMF lines, the metric-name catalogue, and the health report."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path

from feed_service.health import stream_health, stream_lags
from feed_service.metrics import FeedMetrics
from feed_service.publisher import MemoryPublisher
from feed_service.router import CandleRouter
from feed_service.streams import StreamId
from functions.core.telemetry import NAMESPACE, SERVICE, STAGE_DIMENSION, MetricName

FEED = Path(__file__).resolve().parents[3] / "feed_service"


def test_emf_line_shape() -> None:
    out = io.StringIO()
    metrics = FeedMetrics("dev", out=out, clock=lambda: 1_700_000_000.0)
    metrics.candle_published(120.0, backfill=False)
    metrics.candle_published(80.0, backfill=True)
    metrics.duplicate_dropped()
    metrics.reconnected()
    metrics.flush()
    metrics.flush()  # nothing new: no second line
    (line,) = out.getvalue().splitlines()
    doc = json.loads(line)
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert doc["_aws"]["Timestamp"] == 1_700_000_000_000
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["service", STAGE_DIMENSION]]
    assert (doc["service"], doc[STAGE_DIMENSION]) == (SERVICE, "dev")
    names = {m["Name"] for m in directive["Metrics"]}
    assert names == {
        MetricName.FEED_CANDLES_PUBLISHED,
        MetricName.FEED_CANDLES_BACKFILLED,
        MetricName.FEED_DUPLICATES_DROPPED,
        MetricName.FEED_RECONNECTS,
        MetricName.FEED_PUBLISH_LAG_MS,
    }
    assert doc[MetricName.FEED_PUBLISH_LAG_MS] == [120.0, 80.0]
    assert doc[MetricName.FEED_CANDLES_PUBLISHED] == 1


def test_lag_values_flush_before_emf_limit() -> None:
    out = io.StringIO()
    metrics = FeedMetrics("dev", out=out)
    for _ in range(250):
        metrics.candle_published(1.0, backfill=False)
    metrics.flush()
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [len(d[MetricName.FEED_PUBLISH_LAG_MS]) for d in docs] == [100, 100, 50]


def test_every_feed_metric_is_emitted_by_name_in_the_code() -> None:
    source = "\n".join(p.read_text() for p in FEED.glob("*.py"))
    used = set(re.findall(r"MetricName\.(FEED_[A-Z_]+)", source))
    assert used == {
        "FEED_CANDLES_PUBLISHED",
        "FEED_CANDLES_BACKFILLED",
        "FEED_DUPLICATES_DROPPED",
        "FEED_RECONNECTS",
        "FEED_PUBLISH_LAG_MS",
        "FEED_STREAM_LAG_S",
        "FEED_PROCESS_STARTS",
    }


def _candle(router: CandleRouter, stream: StreamId, close_s: float) -> None:
    """Mark `stream` as having closed a candle at `close_s` (what publishing records)."""
    state = router.states()[stream]
    state.last_close_ms = int(close_s * 1000)
    state.last_open_ms = int(close_s * 1000) - 59_999


def test_one_quiet_stream_is_degraded_not_unhealthy_until_no_stream_is_served() -> None:
    now = [10_000.0]
    router = CandleRouter(MemoryPublisher(), clock=lambda: now[0])
    btc, eth, gone = StreamId("BTCUSDT", "1m"), StreamId("ETHUSDT", "1m"), StreamId("DELISTED", "1m")
    for stream in (btc, eth, gone):
        router.expect(stream)
    now[0] += 200  # past 2 intervals + 30 s grace since subscribing
    _candle(router, btc, now[0] - 10)
    _candle(router, eth, now[0] - 70)  # one close missed: late, not stale

    healthy, body = stream_health(router, clock=lambda: now[0], stale_after_intervals=2, grace_s=30)

    assert healthy
    assert body["status"] == "degraded" and body["serving"] == 2
    streams = body["streams"]
    assert {name: s["status"] for name, s in streams.items()} == {
        "BTCUSDT@1m": "ok",
        "ETHUSDT@1m": "ok",
        "DELISTED@1m": "degraded",
    }
    assert streams["BTCUSDT@1m"]["age_s"] == 10 and streams["BTCUSDT@1m"]["lag_s"] == 0
    assert streams["ETHUSDT@1m"]["lag_s"] == 10  # 70 s since the last close of a 1m stream
    assert streams["DELISTED@1m"]["age_s"] == 200 and streams["DELISTED@1m"]["last_close_age_s"] is None
    assert sorted(stream_lags(body)) == [0, 10, 140]

    now[0] += 600  # now nothing is served
    healthy, body = stream_health(router, clock=lambda: now[0], stale_after_intervals=2, grace_s=30)
    assert not healthy and body["status"] == "unhealthy" and body["serving"] == 0


def test_stream_lags_are_sampled_into_each_flush_in_emf_sized_lines() -> None:
    out = io.StringIO()
    metrics = FeedMetrics("dev", out=out)
    metrics.stream_lags = lambda: [float(i) for i in range(150)]
    metrics.process_started()
    metrics.flush()
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [len(d[MetricName.FEED_STREAM_LAG_S]) for d in docs] == [100, 50]
    assert docs[0][MetricName.FEED_PROCESS_STARTS] == 1
    assert MetricName.FEED_PROCESS_STARTS not in docs[1]
    assert max(max(d[MetricName.FEED_STREAM_LAG_S]) for d in docs) == 149


def test_stream_health_staleness() -> None:
    now = [1_000.0]
    router = CandleRouter(MemoryPublisher(), clock=lambda: now[0])
    router.expect(StreamId("BTCUSDT", "1m"))
    healthy, body = stream_health(router, clock=lambda: now[0], stale_after_intervals=2, grace_s=30)
    assert healthy and body["streams"]["BTCUSDT@1m"]["last_close_age_s"] is None
    now[0] += 151  # no candle for 2 intervals + grace since subscribing
    healthy, body = stream_health(router, clock=lambda: now[0], stale_after_intervals=2, grace_s=30)
    assert not healthy and body["streams"]["BTCUSDT@1m"]["stale"]
    assert asyncio.run(_no_streams_is_healthy()) == (True, "idle")


async def _no_streams_is_healthy() -> tuple[bool, str]:
    healthy, body = stream_health(CandleRouter(MemoryPublisher()))
    return healthy, body["status"]
