"""Domain models: what llm-proxy answers and what the workflows reason about.

LLM answers are validated here, once, at the edge of the domain: an answer that does
not fit is an `LlmProxyInvalidAnswer`, recorded as a failed attempt, never half-applied.
Unknown extra fields are ignored (the proxy may add more over time).
"""

from __future__ import annotations

import json
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from functions.core.vocabulary import DecisionResult, RejectionReason, SetupResult

# No traded price, size or fraction lies outside 1e-30..1e30: beyond that a number from
# the LLM is nonsense, and `1e999999` would not even fit a Postgres numeric.
PLAUSIBLE_EXPONENTS = (-30, 30)
MAX_TOKENS = 2**31 - 1  # the token columns are Postgres integers


def is_plausible(number: Decimal) -> bool:
    return number.is_finite() and PLAUSIBLE_EXPONENTS[0] <= number.adjusted() <= PLAUSIBLE_EXPONENTS[1]


class Decision(StrEnum):
    ENTER_TRADE = "enter_trade"
    BAD_SETUP = "bad_setup"
    WAIT = "wait"


class Action(StrEnum):
    HOLD = "hold"
    ADJUST_SL = "adjust_sl"
    ADJUST_TP = "adjust_tp"
    REDUCE = "reduce"
    CLOSE = "close"


class Side(StrEnum):
    LONG = "long"
    SHORT = "short"


class AnalysisType(StrEnum):
    INITIAL = "initial"
    MONITORING = "monitoring"


class Usage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    prompt_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    completion_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    total_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)


class TradePlan(BaseModel):
    """The plan that comes with `enter_trade`; prices as decimals, never floats."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    side: Side
    entry: Decimal | None = Field(default=None, gt=0)
    stop_loss: Decimal | None = Field(default=None, gt=0)
    take_profit: Decimal | None = Field(default=None, gt=0)
    contracts: Decimal | None = Field(default=None, gt=0)

    @field_validator("entry", "stop_loss", "take_profit", "contracts", mode="before")
    @classmethod
    def _no_float_noise(cls, value: Any) -> Any:
        # A JSON float like 0.1 must become Decimal("0.1"), not 0.1000000000000000055...
        return str(value) if isinstance(value, float) else value

    @field_validator("entry", "stop_loss", "take_profit", "contracts")
    @classmethod
    def _plausible(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not is_plausible(value):
            raise ValueError("not a plausible price or size")
        return value

    def brackets(self, entry: Decimal) -> bool:
        """A long's stop below `entry` and target above it (mirrored for a short)."""
        below, above = (
            (self.stop_loss, self.take_profit)
            if self.side is Side.LONG
            else (self.take_profit, self.stop_loss)
        )
        return (below is None or below < entry) and (above is None or above > entry)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    confidence: float | None = Field(default=None, ge=0, le=1)
    reasoning: str = ""
    usage: Usage = Usage()
    model: str | None = None
    trace_id: str | None = None

    @field_validator("reasoning", "model", "trace_id")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # Postgres text cannot hold NUL; dropping it loses nothing a reader could see.
        return None if value is None else value.replace("\x00", "")


class SetupAnswer(_Answer):
    """`POST /analyze-signal` answer."""

    decision: Decision
    trade_plan: TradePlan | None = None


class ManagementAnswer(_Answer):
    """`POST /manage-position` answer. `params` stays raw: the guardrails judge it."""

    action: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _storable(self) -> ManagementAnswer:
        # jsonb refuses "\u0000"; such params are garbage, not something to half-store.
        if "\x00" in self.action or "\\u0000" in json.dumps(self.params):
            raise ValueError("action or params contain a NUL character")
        return self


class LlmResult(BaseModel):
    """An answer plus what it cost to get it (stored on the analysis / decision row)."""

    model_config = ConfigDict(frozen=True)

    answer: SetupAnswer | ManagementAnswer
    latency_ms: int = Field(ge=0)
    attempts: int = Field(default=1, ge=1)


class PositionSnapshot(BaseModel):
    """A position as the guardrails see it; `version` guards against concurrent edits."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    side: Side
    entry_price: Decimal
    contracts: Decimal
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    status: str = "open"
    version: int = 0


class TraceMetadata(BaseModel):
    """What llm-proxy forwards to Braintrust so every analysis has a trace."""

    model_config = ConfigDict(frozen=True)

    workflow_id: UUID | None = None
    workflow_type: str | None = None
    signal_id: UUID | None = None
    position_id: UUID | None = None
    trader_id: UUID | None = None
    candle_time: str | None = None
    analysis_type: str
    stage: str = "local"


class AnalyzeSignalRequest(BaseModel):
    """Body of `POST /analyze-signal`: the signal, its trader, the candle and history."""

    model_config = ConfigDict(frozen=True)

    signal: dict[str, Any]
    trader: dict[str, Any]
    candle: dict[str, Any] | None = None
    previous_analyses: list[dict[str, Any]] = Field(default_factory=list)
    analysis_type: AnalysisType
    metadata: TraceMetadata


class ManagePositionRequest(BaseModel):
    """Body of `POST /manage-position`: the position, the candle and recent decisions."""

    model_config = ConfigDict(frozen=True)

    position: dict[str, Any]
    candle: dict[str, Any]
    recent_decisions: list[dict[str, Any]] = Field(default_factory=list)
    metadata: TraceMetadata


class _Outcome(BaseModel):
    """Base of what the SQL functions answer (jsonb); unknown keys are kept out."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Registration(_Outcome):
    action: str  # registered | already_registered | ignored | stopped | already_stopped
    workflow_id: UUID | None = None
    reason: str | None = None
    symbol: str | None = None
    interval: str | None = None


class ClaimResult(_Outcome):
    claimed: bool
    reason: str  # a `ClaimReason`, or `signal_<status>` (an open set)


class SetupOutcome(_Outcome):
    outcome: SetupResult
    analysis_id: UUID | None = None
    # A shadow workflow's answer is recorded, not applied: outcome `shadow`, and
    # `would_apply` the outcome a live workflow would have had.
    shadow: bool = False
    would_apply: SetupResult | None = None
    reanalysis_count: int | None = None
    position_id: UUID | None = None
    position_workflow_id: UUID | None = None
    workflow_id: UUID | None = None


class DecisionOutcome(_Outcome):
    outcome: DecisionResult
    decision_id: UUID | None = None
    # A shadow workflow's decision is recorded, the position untouched.
    shadow: bool = False
    would_apply: str | None = None
    reason: RejectionReason | None = None
    workflow_stopped: bool = False


class FailureOutcome(_Outcome):
    consecutive_errors: int
    disabled: bool


class ReconcileOutcome(_Outcome):
    registered_setup: list[UUID] = Field(default_factory=list)
    registered_positions: list[UUID] = Field(default_factory=list)
    stopped: list[UUID] = Field(default_factory=list)
    active_setup: int = 0
    active_positions: int = 0
    initial_queued: list[UUID] = Field(default_factory=list)


class SetupContext(BaseModel):
    """What the setup-analysis prompt needs: the signal, its trader, its history."""

    model_config = ConfigDict(frozen=True)

    workflow_id: UUID | None
    signal_id: UUID
    signal: dict[str, Any]
    trader: dict[str, Any]
    previous_analyses: list[dict[str, Any]]


class PositionContext(BaseModel):
    model_config = ConfigDict(frozen=True)

    workflow_id: UUID
    trader_id: UUID
    position: PositionSnapshot
    position_row: dict[str, Any]
    recent_decisions: list[dict[str, Any]]


class WorkflowIdentity(BaseModel):
    """Who a workflow is about: what the brief's log lines name (signal, symbol, interval)."""

    model_config = ConfigDict(frozen=True)

    workflow_id: UUID
    workflow_type: str
    signal_id: UUID | None = None
    position_id: UUID | None = None
    symbol: str
    interval: str
    stopped_reason: str | None = None
