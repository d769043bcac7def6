"""Every environment variable the feed reads, in one place.

The feed is a separate process (a container) that must not import `functions.settings`
(import-linter forbids it), so it keeps its own small settings model. Values are read
when `FeedSettings()` is built — by `main()` — never at import, so tests construct
settings explicitly and the process environment never leaks into them.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from feed_service.binance import MARKETS, BinanceMarket
from feed_service.streams import StreamId, parse_streams
from functions.core.contracts import Market


class FeedSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    binance_market: Market = Market.SPOT
    binance_ws_url: str | None = Field(default=None, description="Overrides the market's WS base.")
    binance_rest_url: str | None = Field(default=None, description="Overrides the REST base.")
    feed_streams: str = Field(default="", description="Static `SYMBOL@INTERVAL,...` list.")
    database_url: SecretStr | None = None
    event_bus_name: str = "cmon-local"
    stage: str = "local"

    # Connection life. Binance cuts a connection at 24 h; rotating at 23 h leaves an hour
    # of margin for the replacement to come up.
    feed_rotation_age_s: float = Field(default=23 * 3600.0, gt=0)
    feed_silence_timeout_s: float = Field(default=60.0, gt=0)
    feed_watchdog_tick_s: float = Field(default=1.0, gt=0)
    feed_backoff_base_s: float = Field(default=0.5, gt=0)
    feed_backoff_max_s: float = Field(default=30.0, gt=0)
    feed_connect_timeout_s: float = Field(default=10.0, gt=0)
    feed_max_streams_per_connection: int | None = Field(default=None, ge=1)
    feed_max_messages_per_second: float | None = Field(default=None, gt=0)
    feed_subscription_refresh_s: float = Field(default=30.0, gt=0)

    # Backfill.
    feed_rest_timeout_s: float = Field(default=10.0, gt=0)
    feed_rest_max_attempts: int = Field(default=5, ge=1)
    feed_rest_max_wait_s: float = Field(default=60.0, ge=0)
    feed_max_backfill_candles: int = Field(default=1000, ge=1)
    # The functions' staleness window, in intervals: at start and after every reconnect
    # each stream republishes its last this-many closed candles (0 = off).
    stale_candle_intervals: int = Field(default=2, ge=0)

    # Publishing.
    feed_queue_size: int = Field(default=1000, ge=1)
    feed_publish_backoff_max_s: float = Field(default=10.0, gt=0)
    feed_flush_timeout_s: float = Field(default=20.0, gt=0)

    # Health and metrics. Port 0 = an ephemeral port (logged), -1 = no health server.
    feed_health_port: int = Field(default=8080, ge=-1, le=65535)
    feed_health_host: str = "0.0.0.0"  # noqa: S104 - the container's HEALTHCHECK and ECS probe it
    feed_stale_after_intervals: float = Field(default=2.0, gt=0)
    feed_stale_grace_s: float = Field(default=30.0, ge=0)
    feed_metrics_interval_s: float = Field(default=60.0, gt=0)

    @field_validator("feed_streams")
    @classmethod
    def _valid_streams(cls, value: str) -> str:
        parse_streams(value)
        return value

    @property
    def market(self) -> Market:
        return self.binance_market

    @property
    def binance_defaults(self) -> BinanceMarket:
        """The market's published endpoints and limits (`feed_service.binance.MARKETS`)."""
        return MARKETS[self.market]

    @property
    def streams(self) -> frozenset[StreamId]:
        return frozenset(parse_streams(self.feed_streams))

    @property
    def ws_url(self) -> str:
        return (self.binance_ws_url or self.binance_defaults.ws_url).rstrip("/")

    @property
    def rest_url(self) -> str:
        return (self.binance_rest_url or self.binance_defaults.rest_url).rstrip("/")

    @property
    def max_streams_per_connection(self) -> int:
        return self.feed_max_streams_per_connection or self.binance_defaults.max_streams_per_connection

    @property
    def max_messages_per_second(self) -> float:
        return self.feed_max_messages_per_second or self.binance_defaults.max_messages_per_second

    @property
    def klines_url(self) -> str:
        return self.rest_url + self.binance_defaults.klines_path

    @property
    def klines_limit(self) -> int:
        return self.binance_defaults.klines_limit
