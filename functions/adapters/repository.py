"""The `Repository` port over Postgres: thin calls into the SQL functions.

Every write goes through a SQL function that holds its invariant in one transaction;
this module only maps Python values in and jsonb answers out. A prompt's context is one
SQL function call too (`functions.adapters.contexts`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from functions.adapters.contexts import PostgresContexts
from functions.adapters.postgres import Database
from functions.adapters.tracing import traced
from functions.core.contracts import CandleClosed, WorkflowType
from functions.core.errors import CallUsage, NotFound
from functions.core.guardrails import Verdict
from functions.core.models import (
    ClaimResult,
    DecisionOutcome,
    FailureOutcome,
    ManagementAnswer,
    PositionSnapshot,
    ReconcileOutcome,
    Registration,
    SetupAnswer,
    SetupOutcome,
    WorkflowIdentity,
)


def _confidence(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(round(value, 4)))


class PostgresRepository(PostgresContexts):
    """Every role of `Repository`; the prompt contexts come from `PostgresContexts`
    (one SQL function call each)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)

    # registration and stopping ---------------------------------------------------------

    def register_setup_monitoring(self, analysis_id: UUID, max_reanalyses: int) -> Registration:
        return Registration.model_validate(
            self.db.call("register_setup_monitoring", analysis_id=analysis_id, max_reanalyses=max_reanalyses)
        )

    def register_position_management(self, position_id: UUID) -> Registration:
        return Registration.model_validate(
            self.db.call("register_position_management", position_id=position_id, check_gate=True)
        )

    def stop_position_management(self, position_id: UUID, reason: str) -> Registration:
        return Registration.model_validate(
            self.db.call("stop_position_management", position_id=position_id, reason=reason)
        )

    def stop_workflow(self, workflow_id: UUID, reason: str) -> Registration:
        return Registration.model_validate(
            self.db.call("stop_workflow", workflow_id=workflow_id, reason=reason)
        )

    def initial_analysis_wanted(self, signal_id: UUID) -> tuple[bool, str]:
        row = self.db.fetch_one(
            "select s.status, t.auto_analyze_signals, public.monitoring_allowed(t.user_id) as allowed,"
            " exists (select 1 from public.signal_analyses a where a.signal_id = s.id"
            "         and a.analysis_type = 'initial') as analysed"
            " from public.signals s join public.traders t on t.id = s.trader_id where s.id = %(id)s",
            {"id": signal_id},
        )
        if row is None:
            return False, "signal_not_found"
        if not row["auto_analyze_signals"]:
            return False, "auto_analyze_off"
        if row["analysed"]:
            return False, "already_analysed"
        if row["status"] != "new":
            return False, f"signal_{row['status']}"
        if not row["allowed"]:
            return False, "rollout_gate"
        return True, "queued"

    # claims -----------------------------------------------------------------------------

    @traced("claim")
    def claim_candle(
        self, workflow_id: UUID, candle_time: datetime, lease_s: int, stale_intervals: int | None = None
    ) -> ClaimResult:
        return ClaimResult.model_validate(
            self.db.call(
                "claim_candle",
                workflow_id=workflow_id,
                candle_time=candle_time,
                lease_seconds=lease_s,
                stale_intervals=stale_intervals,
            )
        )

    @traced("claim")
    def claim_initial_analysis(self, signal_id: UUID, lease_s: int) -> ClaimResult:
        return ClaimResult.model_validate(
            self.db.call("claim_initial_analysis", signal_id=signal_id, lease_seconds=lease_s)
        )

    # record + apply -------------------------------------------------------------------

    @traced("record")
    def record_setup_analysis(
        self, workflow_id: UUID, candle: CandleClosed, answer: SetupAnswer, latency_ms: int
    ) -> SetupOutcome:
        return SetupOutcome.model_validate(
            self.db.call(
                "record_setup_analysis",
                workflow_id=workflow_id,
                candle_time=candle.close_time,
                decision=answer.decision.value,
                price=candle.close,
                **self._answer_fields(answer, latency_ms),
                trade_plan=None if answer.trade_plan is None else answer.trade_plan.model_dump(mode="json"),
            )
        )

    @traced("record")
    def record_initial_analysis(
        self, signal_id: UUID, answer: SetupAnswer, latency_ms: int, max_reanalyses: int
    ) -> SetupOutcome:
        return SetupOutcome.model_validate(
            self.db.call(
                "record_initial_analysis",
                signal_id=signal_id,
                decision=answer.decision.value,
                max_reanalyses=max_reanalyses,
                **self._answer_fields(answer, latency_ms),
                trade_plan=None if answer.trade_plan is None else answer.trade_plan.model_dump(mode="json"),
            )
        )

    @traced("record")
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
        answer_fields = self._answer_fields(answer, latency_ms) if answer is not None else {}
        return DecisionOutcome.model_validate(
            self.db.call(
                "record_management_decision",
                workflow_id=workflow_id,
                candle_time=candle.close_time,
                action=verdict.action,
                params=params,
                verdict="apply" if verdict.apply else "reject",
                rejection_reason=verdict.reason,
                price=candle.close,
                expected_version=position.version,
                new_stop_loss=verdict.stop_loss,
                new_take_profit=verdict.take_profit,
                reduce_fraction=verdict.fraction,
                exit_price=exit_price,
                source=source,
                **answer_fields,
            )
        )

    @staticmethod
    def _answer_fields(answer: SetupAnswer | ManagementAnswer, latency_ms: int | None) -> dict[str, Any]:
        return {
            "confidence": _confidence(answer.confidence),
            "reasoning": answer.reasoning,
            "prompt_tokens": answer.usage.prompt_tokens,
            "completion_tokens": answer.usage.completion_tokens,
            "total_tokens": answer.usage.total_tokens,
            "latency_ms": latency_ms,
            "model": answer.model,
            "trace_id": answer.trace_id,
        }

    @staticmethod
    def _usage_fields(usage: CallUsage | None) -> dict[str, Any]:
        """A failed call's usage for the ledger; no keys at all when no answer came back."""
        if usage is None:
            return {}
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "latency_ms": usage.latency_ms,
            "model": usage.model,
            "trace_id": usage.trace_id,
        }

    @traced("record")
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
        return FailureOutcome.model_validate(
            self.db.call(
                "record_workflow_failure",
                workflow_id=workflow_id,
                candle_time=candle_time,
                error_kind=kind,
                message=message,
                max_errors=max_errors,
                **self._usage_fields(usage),
            )
        )

    @traced("record")
    def record_initial_failure(
        self,
        signal_id: UUID,
        kind: str,
        message: str,
        *,
        release_claim: bool = False,
        usage: CallUsage | None = None,
    ) -> None:
        self.db.call(
            "record_initial_failure",
            signal_id=signal_id,
            error_kind=kind,
            message=message,
            release_claim=release_claim,
            **self._usage_fields(usage),
        )

    # fan-out, reconciliation ------------------------------------------------------------

    def workflows_for_candle(self, candle: CandleClosed) -> list[tuple[UUID, WorkflowType]]:
        # The market is part of the stream: a spot and a USD-M feed on one bus each
        # drive only their own market's workflows.
        rows = self.db.fetch_all(
            "select workflow_id, workflow_type from public.workflows_for_candle("
            "p_market => %(m)s, p_symbol => %(s)s, p_interval => %(i)s, p_candle_time => %(t)s)",
            {"m": candle.market.value, "s": candle.symbol, "i": candle.interval, "t": candle.close_time},
        )
        return [(r["workflow_id"], WorkflowType(r["workflow_type"])) for r in rows]

    def reconcile(self, max_reanalyses: int) -> ReconcileOutcome:
        return ReconcileOutcome.model_validate(
            self.db.call("reconcile_workflows", max_reanalyses=max_reanalyses)
        )

    def signals_missing_initial_analysis(self) -> list[UUID]:
        rows = self.db.fetch_all("select id from public.signals_missing_initial_analysis() as id")
        return [r["id"] for r in rows]

    def rollout_admitted_share(self) -> float:
        row = self.db.fetch_one("select public.rollout_admitted_share() as share")
        return 1.0 if row is None else float(row["share"])

    # log fields -------------------------------------------------------------------------

    def workflow_identity(self, workflow_id: UUID) -> WorkflowIdentity:
        row = self.db.fetch_one(
            "select w.id as workflow_id, w.workflow_type, coalesce(w.signal_id, p.signal_id) as signal_id,"
            " w.position_id, w.symbol, w.interval, w.stopped_reason from public.workflow_schedules w"
            " left join public.positions p on p.id = w.position_id where w.id = %(id)s",
            {"id": workflow_id},
        )
        if row is None:
            raise NotFound(f"workflow {workflow_id} not found")
        return WorkflowIdentity.model_validate(row)

    def initial_failure_count(self, signal_id: UUID) -> int:
        """Failed initial analyses of the signal: it has no workflow counter (yet)."""
        row = self.db.fetch_one(
            "select count(*) as n from public.workflow_errors"
            " where signal_id = %(s)s and workflow_id is null",
            {"s": signal_id},
        )
        return int(row["n"]) if row is not None else 0
