"""`python -m feed_service` (and `cmon feed`): run the candle feed.

Examples::

    FEED_STREAMS=BTCUSDT@1m python -m feed_service                 # live → EventBridge
    python -m feed_service --market simulate --streams BTCUSDT@1m --speed 60 --sink stdout
    python -m feed_service --market replay:tests/events/binance/session.jsonl --dry-run

SIGINT and SIGTERM stop the feed cleanly: connections close, the publisher flushes what
it holds, and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any

from pydantic import ValidationError

from feed_service.app import FeedApp, Mode, parse_market_option
from feed_service.metrics import FeedMetrics
from feed_service.publisher import EventBridgePublisher, Publisher, StdoutPublisher
from feed_service.settings import FeedSettings
from feed_service.streams import parse_streams
from functions.core.errors import CmonError
from functions.core.logs import service_logger

log = logging.getLogger("feed_service")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cmon feed",
        description="Publish closed Binance candles (deduplicated, gaps backfilled) as "
        "CandleClosed events. Environment: BINANCE_MARKET, BINANCE_WS_URL, "
        "BINANCE_REST_URL, FEED_STREAMS, DATABASE_URL, EVENT_BUS_NAME, STAGE, "
        "STALE_CANDLE_INTERVALS (closed candles republished per stream at start and after "
        "every reconnect, default 2), AWS_ENDPOINT_URL and the FEED_* tuning variables.",
    )
    parser.add_argument(
        "--market",
        default="live",
        metavar="live|spot|usdm|simulate|replay:FILE",
        help="live = Binance on BINANCE_MARKET (spot or usdm, default spot); spot/usdm "
        "force the market; simulate = synthetic random-walk candles; replay:FILE = "
        "the closed candles of a recorded .jsonl of raw or combined frames.",
    )
    parser.add_argument(
        "--streams",
        help="comma-separated SYMBOL@INTERVAL (overrides FEED_STREAMS), e.g. BTCUSDT@1m,ETHUSDT@5m",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulate: simulated seconds per real second (60 → a 1m candle every second; default 60)",
    )
    parser.add_argument("--limit", type=int, default=None, help="simulate: stop after this many candles")
    parser.add_argument("--seed", type=int, default=None, help="simulate: random seed")
    parser.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="port of GET /health (0 = ephemeral, -1 = off; default FEED_HEALTH_PORT or 8080)",
    )
    parser.add_argument(
        "--sink",
        choices=("eventbridge", "stdout"),
        default=None,
        help="where candles go (default eventbridge for live, stdout otherwise)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print candles as JSON lines instead of publishing (= --sink stdout)",
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def _make_publisher(sink: str, settings: FeedSettings, metrics: FeedMetrics) -> Publisher:
    if sink == "stdout":
        return StdoutPublisher()
    import boto3  # only the EventBridge sink needs it; boto3 honours AWS_ENDPOINT_URL

    client = boto3.client("events")
    return EventBridgePublisher(
        client,
        settings.event_bus_name,
        queue_size=settings.feed_queue_size,
        metrics=metrics,
        backoff_max_s=settings.feed_publish_backoff_max_s,
        flush_timeout_s=settings.feed_flush_timeout_s,
    )


async def _run(app: FeedApp) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await app.run(stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The same JSON lines as the functions' (functions.core.logs), on stderr: stdout may
    # carry the candles themselves (the stdout sink).
    service_logger("cmon-feed", stream=sys.stderr, level=args.log_level)
    try:
        mode, market, replay_path = parse_market_option(args.market)
        overrides: dict[str, Any] = {}
        if market is not None:
            overrides["binance_market"] = market
        if args.streams is not None:
            parse_streams(args.streams)
            overrides["feed_streams"] = args.streams
        if args.health_port is not None:
            overrides["feed_health_port"] = args.health_port
        settings = FeedSettings(**overrides)
    except (ValueError, ValidationError) as e:
        print(f"cmon feed: {e}", file=sys.stderr)
        return 2
    if mode is Mode.SIMULATE and not settings.streams:
        print("cmon feed: --market simulate needs --streams or FEED_STREAMS", file=sys.stderr)
        return 2
    if replay_path is not None and not replay_path.is_file():
        print(f"cmon feed: no such replay file: {replay_path}", file=sys.stderr)
        return 2
    sink = "stdout" if args.dry_run else (args.sink or ("eventbridge" if mode is Mode.LIVE else "stdout"))
    # Candles printed on stdout keep stdout for themselves; metrics go to stderr then.
    metrics = FeedMetrics(settings.stage, out=sys.stderr if sink == "stdout" else sys.stdout)
    publisher = _make_publisher(sink, settings, metrics)
    app = FeedApp(
        settings,
        publisher,
        mode=mode,
        replay_path=replay_path,
        speed=args.speed,
        simulate_limit=args.limit,
        seed=args.seed,
        metrics=metrics,
    )
    try:
        asyncio.run(_run(app))
    except CmonError as e:
        log.error("feed stopped: %s", e)
        return 1
    log.info("feed stopped: %s", json.dumps(app.summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
