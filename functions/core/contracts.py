"""Wire contracts shared by the feed, the fan-out and the workers (see CONTRACTS.md).

`CandleClosed` is the EventBridge detail the feed publishes and the fan-out reads;
`AnalysisJob` is the SQS message the fan-out (or the API, for initial analyses) writes
and the workers read. Both are versioned and serialise prices as decimal strings so no
float ever touches a price.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from functions.core import intervals

EVENT_SOURCE = "cmon.feed"
DETAIL_TYPE = "CandleClosed"


def format_time(moment: datetime) -> str:
    """ISO-8601 UTC with millisecond precision and a `Z`, as the contract shows."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


DecimalStr = Annotated[Decimal, PlainSerializer(lambda v: format(v, "f"), return_type=str)]
UtcTime = Annotated[datetime, PlainSerializer(format_time, return_type=str)]


class Market(StrEnum):
    SPOT = "spot"
    USDM = "usdm"


class CandleSource(StrEnum):
    STREAM = "stream"
    BACKFILL = "backfill"


class CandleClosed(BaseModel):
    """One closed candle: the `Detail` of a `CandleClosed` EventBridge event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: Literal[1] = 1
    exchange: str = "binance"
    market: Market = Market.SPOT
    symbol: str = Field(min_length=2, max_length=32, pattern=r"^[A-Z0-9]+$")
    interval: str
    open_time: UtcTime
    close_time: UtcTime
    open: DecimalStr
    high: DecimalStr
    low: DecimalStr
    close: DecimalStr
    volume: DecimalStr
    trades: int = Field(ge=0, strict=True)  # `true` is not a trade count
    source: CandleSource = CandleSource.STREAM

    @field_validator("interval")
    @classmethod
    def _known_interval(cls, value: str) -> str:
        return intervals.validate(value)

    @field_validator("open_time", "close_time")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("open", "high", "low", "close", "volume")
    @classmethod
    def _finite(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 0:
            raise ValueError("must be a finite, non-negative decimal")
        return value.copy_abs()  # "-0.000" is zero; never write it back with a sign

    @model_validator(mode="after")
    def _coherent(self) -> CandleClosed:
        if self.close_time <= self.open_time:
            raise ValueError("close_time must be after open_time")
        if not (self.low <= min(self.open, self.close) and self.high >= max(self.open, self.close)):
            raise ValueError("high/low must bracket open and close")
        return self

    @property
    def stream_key(self) -> tuple[str, str, str, str]:
        """What identifies a candle's stream; with `open_time` it identifies the candle."""
        return (self.exchange, self.market.value, self.symbol, self.interval)

    def to_detail(self) -> dict[str, Any]:
        """The JSON-ready detail, prices as strings."""
        return self.model_dump(mode="json")


class WorkflowType(StrEnum):
    SETUP_MONITORING = "setup_monitoring"
    POSITION_MANAGEMENT = "position_management"


class JobKind(StrEnum):
    CANDLE = "candle"
    INITIAL_ANALYSIS = "initial_analysis"


class AnalysisJob(BaseModel):
    """An SQS job: analyse one workflow at one candle, or a signal's initial analysis."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: Literal[1] = 1
    kind: JobKind = JobKind.CANDLE
    workflow_id: UUID | None = None
    workflow_type: WorkflowType | None = None
    signal_id: UUID | None = None
    candle: CandleClosed | None = None

    @model_validator(mode="after")
    def _complete(self) -> AnalysisJob:
        if self.kind is JobKind.CANDLE and (self.workflow_id is None or self.candle is None):
            raise ValueError("a candle job needs workflow_id and candle")
        if self.kind is JobKind.INITIAL_ANALYSIS and self.signal_id is None:
            raise ValueError("an initial-analysis job needs signal_id")
        return self

    @property
    def dedup_key(self) -> str:
        """Also the llm-proxy Idempotency-Key: `<workflow id>:<candle close time>`."""
        if self.kind is JobKind.INITIAL_ANALYSIS:
            return f"initial:{self.signal_id}"
        assert self.candle is not None
        return f"{self.workflow_id}:{format_time(self.candle.close_time)}"
