"""EMF lines, the metric-name catalogue, and the health report."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path

from feed_service.health import stream_health
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
    }


def test_stream_health_staleness() -> None:
    now = [1_000.0]
    router = CandleRouter(MemoryPublisher(), clock=lambda: now[0])
    router.expect(StreamId("BTCUSDT", "1m"))
    healthy, body = stream_health(router, clock=lambda: now[0], stale_after_intervals=2, grace_s=30)
    assert healthy and body["streams"]["BTCUSDT@1m"]["last_close_age_s"] is None
    now[0] += 151  # no candle for 2 intervals + grace since subscribing
    healthy, body = stream_health(router, clock=lambda: now[0], stale_after_intervals=2, grace_s=30)
    assert not healthy and body["streams"]["BTCUSDT@1m"]["stale"]
    assert asyncio.run(_no_streams_is_healthy())


async def _no_streams_is_healthy() -> bool:
    return stream_health(CandleRouter(MemoryPublisher()))[0]
