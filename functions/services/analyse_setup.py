"""Setup-analysis use case: re-analyse a `wait` signal at a candle close (or analyse a
new signal once), then record the analysis and apply its decision in one SQL call.

Order matters: claim first (a second delivery stops here), call the LLM, then record +
apply. The LLM call carries `Idempotency-Key: <workflow>:<candle>` so even a taken-over
claim does not pay for a second answer.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any
from uuid import UUID

from functions.core.contracts import AnalysisJob, JobKind, format_time
from functions.core.errors import DatabaseError, LlmProxyError, LlmProxyInvalidAnswer, LlmProxyUnavailable
from functions.core.models import (
    AnalysisType,
    AnalyzeSignalRequest,
    Decision,
    LlmResult,
    SetupAnswer,
    SetupContext,
    SetupOutcome,
    TraceMetadata,
)
from functions.core.operator import InitialAnalysisBy
from functions.core.telemetry import SERVICE, LogEvent, MetricName
from functions.core.vocabulary import JobStatus, SetupResult, SkipReason, StopReason
from functions.services.jobs import (
    JobOutcome,
    WorkerConfig,
    count_failure,
    count_llm_success,
    error_kind,
    failure_usage,
    record_failed_attempt,
    skipped_claim,
)
from functions.services.log_fields import error_fields, identity_fields, workflow_fields
from functions.services.ports import JobStore, LlmProxy, Metrics

log = logging.getLogger(f"{SERVICE}.setup")


def _request(job: AnalysisJob, ctx: SetupContext, config: WorkerConfig) -> AnalyzeSignalRequest:
    monitoring = job.kind is JobKind.CANDLE
    return AnalyzeSignalRequest(
        signal=ctx.signal,
        trader=ctx.trader,
        candle=job.candle.to_detail() if job.candle else None,
        previous_analyses=ctx.previous_analyses,
        analysis_type=AnalysisType.MONITORING if monitoring else AnalysisType.INITIAL,
        metadata=TraceMetadata(
            workflow_id=job.workflow_id,
            workflow_type="setup_monitoring" if monitoring else None,
            signal_id=ctx.signal_id,
            trader_id=ctx.trader.get("id"),
            candle_time=format_time(job.candle.close_time) if job.candle else None,
            analysis_type=(AnalysisType.MONITORING if monitoring else AnalysisType.INITIAL).value,
            stage=config.stage,
        ),
    )


def _answer(result: LlmResult, *, price: Decimal | None) -> SetupAnswer:
    """The answer, if it is one we can apply: an `enter_trade` needs a plan whose stop and
    target bracket its entry (the plan's own, else the candle's close)."""
    answer = result.answer
    if not isinstance(answer, SetupAnswer):
        raise LlmProxyInvalidAnswer("analyze-signal answered a management action")
    if answer.decision is Decision.ENTER_TRADE:
        plan = answer.trade_plan
        if plan is None:
            raise LlmProxyInvalidAnswer("enter_trade without a trade_plan")
        entry = plan.entry or price
        if entry is None:
            raise LlmProxyInvalidAnswer("enter_trade without an entry price and no candle to price it")
        if not plan.brackets(entry):
            raise LlmProxyInvalidAnswer(
                f"trade plan does not bracket its entry {entry}: {plan.side} stop {plan.stop_loss},"
                f" target {plan.take_profit}"
            )
    return answer


# The SQL outcome of a setup answer that stops its workflow, and the stopped_reason it wrote.
_STOPPED_REASON = {
    SetupResult.EXPIRED: StopReason.MAX_REANALYSES,
    SetupResult.ENTERED: StopReason.ENTERED,
    SetupResult.BAD_SETUP: StopReason.BAD_SETUP,
}


def _fields(job: AnalysisJob, ctx: SetupContext, workflow_id: UUID | None = None) -> dict[str, Any]:
    return workflow_fields(
        workflow_id=job.workflow_id or workflow_id,
        signal_id=ctx.signal_id,
        symbol=ctx.signal.get("symbol"),
        interval=job.candle.interval if job.candle else None,
    )


def _log_outcome(
    job: AnalysisJob,
    ctx: SetupContext,
    answer: SetupAnswer,
    result: LlmResult,
    outcome: SetupOutcome,
    *,
    repo: JobStore,
    metrics: Metrics,
) -> None:
    fields = _fields(job, ctx, outcome.workflow_id)
    # A shadow answer was recorded and not applied; its workflow's own lifecycle (started,
    # stopped) follows what a live one would have done.
    effective = outcome.would_apply if outcome.shadow and outcome.would_apply else outcome.outcome
    if outcome.shadow:
        metrics.count(MetricName.SHADOW_ANALYSES)
    log.info(
        LogEvent.ANALYSIS_COMPLETE,
        extra={
            **fields,
            "analysis_type": (
                AnalysisType.MONITORING if job.kind is JobKind.CANDLE else AnalysisType.INITIAL
            ).value,
            "decision": answer.decision.value,
            "confidence": answer.confidence,
            "tokens": answer.usage.total_tokens,
            "latency_ms": result.latency_ms,
            "outcome": outcome.outcome,
            "shadow": outcome.shadow,
            "would_apply": outcome.would_apply,
        },
    )
    if job.kind is JobKind.CANDLE and effective in _STOPPED_REASON:
        metrics.count(MetricName.WORKFLOWS_STOPPED)
        log.info(LogEvent.WORKFLOW_STOPPED, extra={**fields, "reason": _STOPPED_REASON[effective]})
    started = outcome.position_workflow_id or (outcome.workflow_id if effective == "monitoring" else None)
    if started is not None:
        metrics.count(MetricName.WORKFLOWS_STARTED)
        log.info(
            LogEvent.WORKFLOW_STARTED,
            extra={**identity_fields(repo.workflow_identity(started)), "via": "analysis"},
        )


def process_setup_job(
    job: AnalysisJob,
    *,
    repo: JobStore,
    llm: LlmProxy,
    metrics: Metrics,
    config: WorkerConfig,
    deadline: float | None = None,
) -> JobOutcome:
    if job.kind is JobKind.INITIAL_ANALYSIS:
        return _initial(job, repo=repo, llm=llm, metrics=metrics, config=config, deadline=deadline)
    assert job.workflow_id is not None and job.candle is not None

    claim = repo.claim_candle(
        job.workflow_id, job.candle.close_time, config.claim_lease_s, config.stale_candle_intervals
    )
    if not claim.claimed:
        return skipped_claim(job, claim.reason, metrics)

    ctx = repo.setup_context(workflow_id=job.workflow_id)
    result: LlmResult | None = None
    try:
        result = llm.analyze_signal(
            _request(job, ctx, config), idempotency_key=job.dedup_key, deadline=deadline
        )
        answer = _answer(result, price=job.candle.close)
        outcome = repo.record_setup_analysis(job.workflow_id, job.candle, answer, result.latency_ms)
    except (LlmProxyError, DatabaseError) as exc:  # DatabaseUnavailable propagates: redelivery
        return record_failed_attempt(
            job,
            exc,
            repo=repo,
            metrics=metrics,
            config=config,
            usage=failure_usage(exc, result),
            fields=_fields(job, ctx),
        )
    if outcome.outcome is SetupResult.DUPLICATE:
        # The claim should make this impossible: an alarm watches this metric.
        metrics.count(MetricName.DUPLICATE_CANDLES_PROCESSED)
        return JobOutcome(JobStatus.SKIPPED, "duplicate_record", job.workflow_id)
    count_llm_success(result, metrics)
    _log_outcome(job, ctx, answer, result, outcome, repo=repo, metrics=metrics)
    return JobOutcome(
        JobStatus.DONE, outcome.outcome, job.workflow_id, result.latency_ms, answer.usage.total_tokens
    )


def _initial(
    job: AnalysisJob,
    *,
    repo: JobStore,
    llm: LlmProxy,
    metrics: Metrics,
    config: WorkerConfig,
    deadline: float | None,
) -> JobOutcome:
    assert job.signal_id is not None
    if config.initial_analysis_by is InitialAnalysisBy.PLATFORM:
        # Queued before INITIAL_ANALYSIS_BY switched to `platform` (or redelivered after):
        # the platform's trigger analyses the signal now, and a second paid call for one
        # signal is what the setting exists to prevent. Nothing is claimed or written.
        return skipped_claim(job, SkipReason.INITIAL_ANALYSIS_BY_PLATFORM, metrics)
    claim = repo.claim_initial_analysis(job.signal_id, config.claim_lease_s)
    if not claim.claimed:
        return skipped_claim(job, claim.reason, metrics)
    ctx = repo.setup_context(signal_id=job.signal_id)
    result: LlmResult | None = None
    try:
        result = llm.analyze_signal(
            _request(job, ctx, config), idempotency_key=job.dedup_key, deadline=deadline
        )
        answer = _answer(result, price=None)
        outcome = repo.record_initial_analysis(
            job.signal_id, answer, result.latency_ms, config.max_reanalyses
        )
    except (LlmProxyError, DatabaseError) as exc:
        # llm-proxy down: release the claim so the reconciler queues the signal again.
        repo.record_initial_failure(
            job.signal_id,
            error_kind(exc),
            str(exc),
            release_claim=isinstance(exc, LlmProxyUnavailable),
            usage=failure_usage(exc, result),
        )
        count_failure(error_kind(exc), metrics)
        consecutive = repo.initial_failure_count(job.signal_id)
        log.warning(
            LogEvent.ERROR,
            extra={**_fields(job, ctx), "analysis_type": AnalysisType.INITIAL.value,
                   **error_fields(exc, error_kind(exc), consecutive)},
        )  # fmt: skip
        return JobOutcome(JobStatus.FAILED, error_kind(exc))
    if outcome.outcome is SetupResult.DUPLICATE:
        metrics.count(MetricName.DUPLICATE_CANDLES_PROCESSED)
        return JobOutcome(JobStatus.SKIPPED, "duplicate_record")
    count_llm_success(result, metrics)
    _log_outcome(job, ctx, answer, result, outcome, repo=repo, metrics=metrics)
    return JobOutcome(
        JobStatus.DONE, outcome.outcome, outcome.workflow_id, result.latency_ms, answer.usage.total_tokens
    )
