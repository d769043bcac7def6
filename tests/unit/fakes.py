"""In-memory fakes of the service ports (functions/services/ports.py), for unit tests.

Each fake records every call it receives (`calls`), so a test can assert both what was
done and what was *not* done (no LLM call, no repository write). Each fake implements
its role ports fully (no stubs that raise): a service that starts using another method
of its role gets a configured answer, and the call shows in `calls`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from functions.core.contracts import AnalysisJob, CandleClosed, WorkflowType
from functions.core.errors import CallUsage, NotFound
from functions.core.guardrails import Verdict
from functions.core.models import (
    AnalyzeSignalRequest,
    ClaimResult,
    DecisionOutcome,
    FailureOutcome,
    LlmResult,
    ManagementAnswer,
    ManagePositionRequest,
    PositionContext,
    PositionSnapshot,
    ReconcileOutcome,
    Registration,
    SetupAnswer,
    SetupContext,
    SetupOutcome,
    WorkflowIdentity,
)
from functions.core.telemetry import MetricName


@dataclass
class Call:
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeRepository:
    """Every role of the `Repository` port (registrations, claims, contexts, recording,
    fan-out, reconciliation, ledger, identities), answering what it was configured with
    and recording every call."""

    workflows: list[tuple[UUID, WorkflowType]] = field(default_factory=list)
    claim: ClaimResult = field(default_factory=lambda: ClaimResult(claimed=True, reason="claimed"))
    setup_ctx: SetupContext | None = None
    position_ctx: PositionContext | None = None
    identity: WorkflowIdentity | None = None
    setup_outcome: SetupOutcome = field(default_factory=lambda: SetupOutcome(outcome="continued"))
    decision_outcome: DecisionOutcome = field(default_factory=lambda: DecisionOutcome(outcome="applied"))
    failure: FailureOutcome = field(
        default_factory=lambda: FailureOutcome(consecutive_errors=1, disabled=False)
    )
    registration: Registration = field(default_factory=lambda: Registration(action="registered"))
    initial_wanted: tuple[bool, str] = (True, "wanted")
    admitted_share: float = 1.0
    reconciled: ReconcileOutcome = field(default_factory=ReconcileOutcome)
    missing_initial: list[UUID] = field(default_factory=list)
    # Raised by every record + apply call (the database refusing what was asked).
    record_error: Exception | None = None
    calls: list[Call] = field(default_factory=list)

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append(Call(name, args, kwargs))

    def called(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    # registration and stopping
    def register_setup_monitoring(self, analysis_id: UUID, max_reanalyses: int) -> Registration:
        self._record("register_setup_monitoring", analysis_id, max_reanalyses)
        return self.registration

    def register_position_management(self, position_id: UUID) -> Registration:
        self._record("register_position_management", position_id)
        return self.registration

    def stop_position_management(self, position_id: UUID, reason: str) -> Registration:
        self._record("stop_position_management", position_id, reason)
        return self.registration

    def stop_workflow(self, workflow_id: UUID, reason: str) -> Registration:
        self._record("stop_workflow", workflow_id, reason)
        return self.registration

    def initial_analysis_wanted(self, signal_id: UUID) -> tuple[bool, str]:
        self._record("initial_analysis_wanted", signal_id)
        return self.initial_wanted

    # claims
    def claim_candle(
        self, workflow_id: UUID, candle_time: datetime, lease_s: int, stale_intervals: int | None = None
    ) -> ClaimResult:
        self._record("claim_candle", workflow_id, candle_time, lease_s, stale_intervals=stale_intervals)
        return self.claim

    def claim_initial_analysis(self, signal_id: UUID, lease_s: int) -> ClaimResult:
        self._record("claim_initial_analysis", signal_id, lease_s)
        return self.claim

    # context for prompts
    def setup_context(
        self, *, workflow_id: UUID | None = None, signal_id: UUID | None = None
    ) -> SetupContext:
        self._record("setup_context", workflow_id=workflow_id, signal_id=signal_id)
        assert self.setup_ctx is not None, "test did not configure setup_ctx"
        return self.setup_ctx

    def position_context(self, workflow_id: UUID) -> PositionContext:
        self._record("position_context", workflow_id)
        assert self.position_ctx is not None, "test did not configure position_ctx"
        return self.position_ctx

    # record + apply
    def record_setup_analysis(
        self, workflow_id: UUID, candle: CandleClosed, answer: SetupAnswer, latency_ms: int
    ) -> SetupOutcome:
        self._record("record_setup_analysis", workflow_id, candle, answer, latency_ms)
        if self.record_error is not None:
            raise self.record_error
        return self.setup_outcome

    def record_initial_analysis(
        self, signal_id: UUID, answer: SetupAnswer, latency_ms: int, max_reanalyses: int
    ) -> SetupOutcome:
        self._record("record_initial_analysis", signal_id, answer, latency_ms, max_reanalyses)
        return self.setup_outcome

    def record_management_decision(
        self,
        workflow_id: UUID,
        candle: CandleClosed,
        position: PositionSnapshot,
        verdict: Verdict,
        *,
        params: dict[str, Any],
        answer: ManagementAnswer | None,
        latency_ms: int | None,
        source: str = "llm",
        exit_price: Decimal | None = None,
    ) -> DecisionOutcome:
        self._record(
            "record_management_decision",
            workflow_id,
            candle,
            position,
            verdict,
            params=params,
            answer=answer,
            latency_ms=latency_ms,
            source=source,
            exit_price=exit_price,
        )
        return self.decision_outcome

    def record_workflow_failure(
        self,
        workflow_id: UUID,
        candle_time: datetime | None,
        kind: str,
        message: str,
        max_errors: int,
        *,
        usage: CallUsage | None = None,
    ) -> FailureOutcome:
        self._record(
            "record_workflow_failure", workflow_id, candle_time, kind, message, max_errors, usage=usage
        )
        return self.failure

    def record_initial_failure(
        self,
        signal_id: UUID,
        kind: str,
        message: str,
        *,
        release_claim: bool = False,
        usage: CallUsage | None = None,
    ) -> None:
        self._record("record_initial_failure", signal_id, kind, message, release_claim, usage=usage)

    # fan-out and reconciliation
    def workflows_for_candle(self, candle: CandleClosed) -> list[tuple[UUID, WorkflowType]]:
        self._record("workflows_for_candle", candle)
        return list(self.workflows)

    def reconcile(self, max_reanalyses: int) -> ReconcileOutcome:
        self._record("reconcile", max_reanalyses)
        return self.reconciled

    def signals_missing_initial_analysis(self) -> list[UUID]:
        self._record("signals_missing_initial_analysis")
        return list(self.missing_initial)

    def rollout_admitted_share(self) -> float:
        self._record("rollout_admitted_share")
        return self.admitted_share

    # log fields
    def workflow_identity(self, workflow_id: UUID) -> WorkflowIdentity:
        if self.identity is not None:
            return self.identity
        return WorkflowIdentity(
            workflow_id=workflow_id, workflow_type="setup_monitoring", symbol="BTCUSDT", interval="1m"
        )

    def initial_failure_count(self, signal_id: UUID) -> int:
        return len(self.called("record_initial_failure"))


@dataclass
class FakeAdminReads:
    """The admin reads over a list of workflow rows (as `select *` returns them)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def list_workflows(
        self,
        *,
        active: bool | None = None,
        workflow_type: str | None = None,
        symbol: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        return [
            r
            for r in self.rows
            if (active is None or r["is_active"] == active)
            and (workflow_type is None or r["workflow_type"] == workflow_type)
            and (symbol is None or r["symbol"] == symbol)
        ][:limit]

    def workflow_detail(self, workflow_id: UUID) -> dict[str, Any]:
        for r in self.rows:
            if r["id"] == str(workflow_id):
                return r | {"analyses": [], "decisions": [], "errors": []}
        raise NotFound(f"workflow {workflow_id} not found")


@dataclass
class FakeQueue:
    """Accepts every job; `batches` keeps each `send_jobs` call separately."""

    batches: list[list[AnalysisJob]] = field(default_factory=list)

    def send_jobs(self, jobs: Sequence[AnalysisJob]) -> int:
        self.batches.append(list(jobs))
        return len(jobs)

    @property
    def jobs(self) -> list[AnalysisJob]:
        return [job for batch in self.batches for job in batch]


@dataclass
class FakeLlm:
    """Answers `result` or raises `error`; records each request and its idempotency key."""

    result: LlmResult | None = None
    error: Exception | None = None
    calls: list[Call] = field(default_factory=list)

    def _answer(self) -> LlmResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None, "test did not configure the LLM's answer"
        return self.result

    def analyze_signal(
        self, request: AnalyzeSignalRequest, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult:
        self.calls.append(Call("analyze_signal", (request,), {"idempotency_key": idempotency_key}))
        return self._answer()

    def manage_position(
        self, request: ManagePositionRequest, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult:
        self.calls.append(Call("manage_position", (request,), {"idempotency_key": idempotency_key}))
        return self._answer()


@dataclass
class FakeMetrics:
    counts: dict[MetricName, float] = field(default_factory=dict)
    timings: list[tuple[MetricName, float]] = field(default_factory=list)

    def count(self, name: MetricName, value: float = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + value

    def timing_ms(self, name: MetricName, value: float) -> None:
        self.timings.append((name, value))
