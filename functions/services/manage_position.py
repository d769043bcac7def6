"""Position-management use case: at a candle close, ask what to do with an open
position, judge the answer with the guardrails, and record + apply (or record the
rejection) in one SQL call.

With paper execution on (local runs, the demo), a candle whose range crossed the
stop-loss or take-profit closes the position at that level first; the LLM is not asked.
"""

from __future__ import annotations

import logging

from functions.core.contracts import AnalysisJob, format_time
from functions.core.errors import DatabaseError, LlmProxyError, LlmProxyInvalidAnswer
from functions.core.guardrails import Verdict, check_action, paper_fill
from functions.core.models import (
    LlmResult,
    ManagementAnswer,
    ManagePositionRequest,
    PositionContext,
    TraceMetadata,
)
from functions.core.telemetry import SERVICE, LogEvent, MetricName
from functions.core.vocabulary import DecisionResult, JobStatus, StopReason
from functions.services.jobs import (
    JobOutcome,
    WorkerConfig,
    count_llm_success,
    failure_usage,
    record_failed_attempt,
    skipped_claim,
)
from functions.services.log_fields import workflow_fields
from functions.services.ports import JobStore, LlmProxy, Metrics

log = logging.getLogger(f"{SERVICE}.positions")


def _request(job: AnalysisJob, ctx: PositionContext, config: WorkerConfig) -> ManagePositionRequest:
    assert job.candle is not None
    return ManagePositionRequest(
        position=ctx.position_row,
        candle=job.candle.to_detail(),
        recent_decisions=ctx.recent_decisions,
        metadata=TraceMetadata(
            workflow_id=job.workflow_id,
            workflow_type="position_management",
            position_id=ctx.position.id,
            trader_id=ctx.trader_id,
            candle_time=format_time(job.candle.close_time),
            analysis_type="position_management",
            stage=config.stage,
        ),
    )


def process_position_job(
    job: AnalysisJob,
    *,
    repo: JobStore,
    llm: LlmProxy,
    metrics: Metrics,
    config: WorkerConfig,
    deadline: float | None = None,
) -> JobOutcome:
    assert job.workflow_id is not None and job.candle is not None
    claim = repo.claim_candle(
        job.workflow_id, job.candle.close_time, config.claim_lease_s, config.stale_candle_intervals
    )
    if not claim.claimed:
        return skipped_claim(job, claim.reason, metrics)
    ctx = repo.position_context(job.workflow_id)
    fields = workflow_fields(
        workflow_id=job.workflow_id,
        signal_id=ctx.position_row.get("signal_id"),
        position_id=ctx.position.id,
        symbol=job.candle.symbol,
        interval=job.candle.interval,
    )

    if config.paper_execution:
        fill = paper_fill(ctx.position, job.candle.low, job.candle.high)
        if fill is not None:
            outcome = repo.record_management_decision(
                job.workflow_id,
                job.candle,
                ctx.position,
                Verdict(action="close", apply=True),
                params={"reason": fill.reason, "level": format(fill.exit_price, "f")},
                answer=None,
                latency_ms=None,
                source="paper",
                exit_price=fill.exit_price,
            )
            metrics.count(MetricName.PAPER_FILLS)
            log.info(
                LogEvent.DECISION_RECORDED,
                extra={
                    **fields,
                    "action": "close",
                    "source": "paper",
                    "reason": fill.reason,
                    "outcome": outcome.outcome,
                    "shadow": outcome.shadow,
                },
            )
            if outcome.shadow:
                metrics.count(MetricName.SHADOW_ANALYSES)
            if outcome.workflow_stopped:
                metrics.count(MetricName.WORKFLOWS_STOPPED)
                log.info(
                    LogEvent.WORKFLOW_STOPPED,
                    extra={**fields, "reason": f"paper_{fill.reason}"},
                )
            return JobOutcome(JobStatus.DONE, f"paper_{fill.reason}", job.workflow_id)

    result: LlmResult | None = None
    try:
        result = llm.manage_position(
            _request(job, ctx, config), idempotency_key=job.dedup_key, deadline=deadline
        )
        answer = result.answer
        if not isinstance(answer, ManagementAnswer):
            raise LlmProxyInvalidAnswer("manage-position answered a setup decision")
        verdict = check_action(
            answer.action, answer.params, ctx.position, job.candle.close, config.guardrails
        )
        outcome = repo.record_management_decision(
            job.workflow_id,
            job.candle,
            ctx.position,
            verdict,
            params=answer.params,
            answer=answer,
            latency_ms=result.latency_ms,
        )
    except (LlmProxyError, DatabaseError) as exc:  # DatabaseUnavailable propagates: redelivery
        return record_failed_attempt(
            job,
            exc,
            repo=repo,
            metrics=metrics,
            config=config,
            usage=failure_usage(exc, result),
            fields=fields,
        )
    if outcome.outcome is DecisionResult.DUPLICATE:
        metrics.count(MetricName.DUPLICATE_CANDLES_PROCESSED)
        return JobOutcome(JobStatus.SKIPPED, "duplicate_record", job.workflow_id)
    count_llm_success(result, metrics)
    metrics.count(MetricName.MANAGEMENT_DECISIONS)
    if outcome.outcome is DecisionResult.REJECTED:
        metrics.count(MetricName.GUARDRAIL_REJECTIONS)
    if outcome.shadow:  # recorded, the position untouched
        metrics.count(MetricName.SHADOW_ANALYSES)
    log.info(
        LogEvent.ANALYSIS_COMPLETE,
        extra={
            **fields,
            "analysis_type": "position_management",
            "decision": answer.action,
            "confidence": answer.confidence,
            "tokens": answer.usage.total_tokens,
            "latency_ms": result.latency_ms,
            "outcome": outcome.outcome,
        },
    )
    log.info(
        LogEvent.DECISION_RECORDED,
        extra={
            **fields,
            "action": answer.action,
            "outcome": outcome.outcome,
            "reason": outcome.reason,
            "shadow": outcome.shadow,
            "confidence": answer.confidence,
            "tokens": answer.usage.total_tokens,
            "latency_ms": result.latency_ms,
        },
    )
    if outcome.workflow_stopped:
        metrics.count(MetricName.WORKFLOWS_STOPPED)
        log.info(LogEvent.WORKFLOW_STOPPED, extra={**fields, "reason": StopReason.POSITION_CLOSED})
    detail = outcome.outcome if outcome.reason is None else f"{outcome.outcome}:{outcome.reason}"
    return JobOutcome(JobStatus.DONE, detail, job.workflow_id, result.latency_ms, answer.usage.total_tokens)
