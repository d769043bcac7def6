"""Wires a source, the router, a publisher, health and metrics into one running feed.

The composition root: the one module (with `settings`) that knows the venue is Binance
(`BinanceVenue`, `KlinesClient`); everything it wires is venue-neutral.

`FeedApp` is what `main()` runs and what functional tests start in-process: every
dependency (publisher, clock, stream provider) can be passed in, and nothing is read
from the environment here — `FeedSettings` arrives already built.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx

from feed_service.binance import BinanceVenue, KlineParser, KlinesClient
from feed_service.health import HealthReport, HealthServer, stream_health, stream_lags
from feed_service.metrics import FeedMetrics
from feed_service.publisher import EventBridgePublisher, MeteredPublisher, Publisher
from feed_service.router import CandleRouter
from feed_service.settings import FeedSettings
from feed_service.sources import LiveFeed, ReplaySource, SimulatedMarket
from feed_service.subscriptions import StreamProvider, WorkflowStreams
from feed_service.supervisor import ConnectionPolicy
from feed_service.timing import WallClock
from functions.core.contracts import Market
from functions.core.retry import BackoffPolicy

log = logging.getLogger(__name__)


class Mode(StrEnum):
    LIVE = "live"
    SIMULATE = "simulate"
    REPLAY = "replay"


def parse_market_option(value: str) -> tuple[Mode, Market | None, Path | None]:
    """`--market` of `cmon feed` and `cmon local`: (mode, forced market, replay file).

    One reading for both commands, so `cmon local --market` can never accept what the
    feed itself would refuse."""
    if value in ("live", ""):
        return Mode.LIVE, None, None
    if value in ("spot", "usdm"):
        return Mode.LIVE, Market(value), None
    if value == "simulate":
        return Mode.SIMULATE, None, None
    if value.startswith("replay:") and len(value) > len("replay:"):
        return Mode.REPLAY, None, Path(value.removeprefix("replay:"))
    raise ValueError(f"unknown --market {value!r} (live, spot, usdm, simulate or replay:FILE)")


class FeedApp:
    def __init__(
        self,
        settings: FeedSettings,
        publisher: Publisher,
        *,
        mode: Mode = Mode.LIVE,
        replay_path: Path | None = None,
        speed: float = 60.0,
        simulate_limit: int | None = None,
        seed: int | None = None,
        metrics: FeedMetrics | None = None,
        provider: StreamProvider | None = None,
        clock: WallClock = time.time,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if mode is Mode.REPLAY and replay_path is None:
            raise ValueError("replay mode needs a file")
        self.settings = settings
        self.metrics = metrics or FeedMetrics(settings.stage)
        # EventBridge counts deliveries itself (after PutEvents accepted them).
        self.publisher: Publisher = (
            publisher
            if isinstance(publisher, EventBridgePublisher)
            else MeteredPublisher(publisher, self.metrics, clock)
        )
        self.mode = mode
        self._replay_path = replay_path
        self._speed = speed
        self._simulate_limit = simulate_limit
        self._seed = seed
        self._clock = clock
        self._provider = provider
        if provider is None and settings.database_url is not None and mode is Mode.LIVE:
            self._provider = WorkflowStreams(settings.database_url.get_secret_value(), settings.market)
        self._http = http
        self._own_http = http is None
        self.router: CandleRouter | None = None
        self.live: LiveFeed | None = None
        self.health: HealthServer | None = None
        self.started = asyncio.Event()

    def report(self) -> HealthReport:
        if self.router is None:
            return False, {"status": "starting", "streams": {}, "connections": []}
        healthy, body = stream_health(
            self.router,
            clock=self._clock,
            stale_after_intervals=self.settings.feed_stale_after_intervals,
            grace_s=self.settings.feed_stale_grace_s,
        )
        body["mode"] = str(self.mode)
        body["connections"] = self.live.status() if self.live is not None else []
        return healthy, body

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set or a finite source (replay, limited simulation) ends.

        Whatever happens, the publisher is flushed and closed before returning.
        """
        settings = self.settings
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=settings.feed_rest_timeout_s)
        backfiller = None
        if self.mode is Mode.LIVE:
            backfiller = KlinesClient(
                settings.klines_url,
                settings.market,
                limit=settings.klines_limit,
                http=self._http,
                max_attempts=settings.feed_rest_max_attempts,
                max_wait_s=settings.feed_rest_max_wait_s,
                backoff=BackoffPolicy(base_s=0.5, cap_s=max(1.0, settings.feed_rest_max_wait_s)),
                clock=self._clock,
            )
        self.router = CandleRouter(
            self.publisher,
            backfiller=backfiller,
            metrics=self.metrics,
            clock=self._clock,
            max_backfill=settings.feed_max_backfill_candles,
            recover_intervals=settings.stale_candle_intervals if backfiller is not None else 0,
        )
        if settings.feed_health_port >= 0:
            self.health = HealthServer(
                self.report, host=settings.feed_health_host, port=settings.feed_health_port
            )
            await self.health.start()
        self.metrics.process_started()
        self.metrics.stream_lags = lambda: stream_lags(self.report()[1])
        metrics_task = asyncio.create_task(self.metrics.run(settings.feed_metrics_interval_s))
        source = asyncio.create_task(self._source(), name=f"source-{self.mode}")
        stopper = asyncio.create_task(stop.wait())
        self.started.set()
        try:
            await asyncio.wait({source, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            source.cancel()
            results = await asyncio.gather(source, return_exceptions=True)
            try:
                await self.publisher.close()
            finally:
                metrics_task.cancel()
                await asyncio.gather(metrics_task, return_exceptions=True)
                if self.health is not None:
                    await self.health.stop()
                if self._own_http and self._http is not None:
                    await self._http.aclose()
        failure = results[0]
        if isinstance(failure, BaseException) and not isinstance(failure, asyncio.CancelledError):
            raise failure

    async def _source(self) -> None:
        assert self.router is not None
        router = self.router
        settings = self.settings
        if self.mode is Mode.LIVE:
            policy = ConnectionPolicy(
                ws_url=settings.ws_url,
                max_messages_per_second=settings.max_messages_per_second,
                rotation_age_s=settings.feed_rotation_age_s,
                silence_timeout_s=settings.feed_silence_timeout_s,
                watchdog_tick_s=settings.feed_watchdog_tick_s,
                backoff_base_s=settings.feed_backoff_base_s,
                backoff_max_s=settings.feed_backoff_max_s,
                connect_timeout_s=settings.feed_connect_timeout_s,
            )
            if not settings.streams and self._provider is None:
                log.warning("no FEED_STREAMS and no DATABASE_URL: nothing to subscribe to")
            self.live = LiveFeed(
                policy,
                router,
                BinanceVenue(settings.market),
                static=settings.streams,
                max_streams_per_connection=settings.max_streams_per_connection,
                provider=self._provider,
                refresh_s=settings.feed_subscription_refresh_s,
                metrics=self.metrics,
            )
            await self.live.run()
        elif self.mode is Mode.SIMULATE:
            for stream in settings.streams:
                router.expect(stream)
            market = SimulatedMarket(
                settings.streams,
                speed=self._speed,
                market=settings.market,
                seed=self._seed,
                limit=self._simulate_limit,
                clock=self._clock,
            )
            await market.run(router.on_candle)
        else:
            assert self._replay_path is not None
            replay = ReplaySource(self._replay_path, KlineParser(settings.market), metrics=self.metrics)
            count = await replay.run(router.on_candle)
            log.info(
                "replay done: %d frames, %d closed candles, %d malformed",
                replay.frames,
                count,
                replay.malformed,
            )

    def summary(self) -> dict[str, Any]:
        totals = {str(k): v for k, v in self.metrics.totals.items()}
        return {"metrics": totals, "malformed_frames": self.metrics.malformed_frames}
