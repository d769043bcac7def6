"""What both workers share: the claim, the failure path and the success metrics.

Failure policy (the brief's error scenarios): an llm-proxy problem (down, slow, invalid
answer) is recorded against the workflow and the job is finished — retrying the same
candle later would analyse a stale market; five in a row disable the workflow and tell
its user. A database outage is different: nothing was recorded, so the exception
propagates and SQS redelivers the message once the claim's lease has run out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from functions.core.contracts import AnalysisJob
from functions.core.errors import (
    CallUsage,
    DatabaseError,
    LlmProxyError,
    LlmProxyInvalidAnswer,
    LlmProxyRejected,
)
from functions.core.guardrails import GuardrailConfig
from functions.core.models import LlmResult
from functions.core.operator import InitialAnalysisBy
from functions.core.telemetry import SERVICE, LogEvent, MetricName
from functions.core.vocabulary import ClaimReason, ErrorKind, JobStatus, StopReason
from functions.services.log_fields import error_fields, workflow_fields
from functions.services.ports import Metrics, Recorder

log = logging.getLogger(f"{SERVICE}.worker")


@dataclass(frozen=True)
class WorkerConfig:
    max_consecutive_errors: int = 5
    claim_lease_s: int = 300
    # The claim refuses a candle older than this many intervals (None: no age limit).
    stale_candle_intervals: int | None = 2
    max_reanalyses: int = 10
    stage: str = "local"
    paper_execution: bool = False
    guardrails: GuardrailConfig = field(default_factory=GuardrailConfig)
    # Who analyses a new signal first (`INITIAL_ANALYSIS_BY`); `platform`: never cmon.
    initial_analysis_by: InitialAnalysisBy = InitialAnalysisBy.CMON


@dataclass(frozen=True)
class JobOutcome:
    """What happened to one job; `detail` is the SQL outcome or the skip/failure reason."""

    status: JobStatus
    detail: str
    workflow_id: UUID | None = None
    llm_latency_ms: int | None = None
    tokens: int = 0


def error_kind(exc: LlmProxyError | DatabaseError) -> ErrorKind:
    if isinstance(exc, DatabaseError):
        return ErrorKind.RECORD_REJECTED
    if isinstance(exc, LlmProxyInvalidAnswer):
        return ErrorKind.LLM_INVALID_ANSWER
    if isinstance(exc, LlmProxyRejected):
        return ErrorKind.LLM_REJECTED
    return ErrorKind.LLM_UNAVAILABLE


# Failures a new function version can cause by itself (its answers do not fit, or the
# database refuses what it asked for), unlike an llm-proxy outage: the canary watches these.
_ANSWER_ERROR_KINDS = frozenset(
    {ErrorKind.LLM_INVALID_ANSWER, ErrorKind.LLM_REJECTED, ErrorKind.RECORD_REJECTED}
)

_SKIP_METRICS: dict[str, MetricName] = {
    ClaimReason.DUPLICATE: MetricName.DUPLICATE_CLAIMS_SKIPPED,
    ClaimReason.STALE: MetricName.STALE_JOBS_SKIPPED,
    ClaimReason.TOKEN_CAP: MetricName.TOKEN_CAP_SKIPPED,
}


def usage_of(result: LlmResult) -> CallUsage:
    usage = result.answer.usage
    return CallUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        latency_ms=result.latency_ms,
        model=result.answer.model,
        trace_id=result.answer.trace_id,
    )


def failure_usage(exc: LlmProxyError | DatabaseError, result: LlmResult | None) -> CallUsage | None:
    """What the failed call cost: the usage its invalid answer reported, or that of an
    answer we judged invalid or the database refused. None when no answer came back."""
    if isinstance(exc, LlmProxyError) and exc.usage is not None:
        return exc.usage
    return usage_of(result) if result is not None else None


def count_failure(kind: ErrorKind, metrics: Metrics) -> None:
    metrics.count(MetricName.ANALYSIS_ERRORS)
    if kind in _ANSWER_ERROR_KINDS:
        metrics.count(MetricName.ANSWER_ERRORS)


def skipped_claim(job: AnalysisJob, reason: str, metrics: Metrics) -> JobOutcome:
    """A refused claim, or a job a setting says is not ours (`SkipReason`): nothing was
    asked of the LLM and nothing counts toward auto-disable."""
    if reason in _SKIP_METRICS:
        metrics.count(_SKIP_METRICS[reason])
    log.info("Job skipped", extra={"workflow_id": str(job.workflow_id), "reason": reason})
    return JobOutcome(JobStatus.SKIPPED, reason, job.workflow_id)


def record_failed_attempt(
    job: AnalysisJob,
    exc: LlmProxyError | DatabaseError,
    *,
    repo: Recorder,
    metrics: Metrics,
    config: WorkerConfig,
    usage: CallUsage | None = None,
    fields: dict[str, Any] | None = None,
) -> JobOutcome:
    """Record a failed attempt against the workflow; the message is done.

    `fields` are the brief's log fields of the workflow (signal, position, symbol,
    interval), so its `Error` and `Workflow stopped` lines say what failed.

    Also takes a `DatabaseError` from the record call: the database refused what the
    answer asked for (a permanent error, unlike `DatabaseUnavailable`). Redelivering
    would call the LLM again and fail again; counting it lets auto-disable stop a
    workflow whose answers can never be stored."""
    assert job.workflow_id is not None and job.candle is not None
    kind = error_kind(exc)
    failure = repo.record_workflow_failure(
        job.workflow_id, job.candle.close_time, kind, str(exc), config.max_consecutive_errors, usage=usage
    )
    count_failure(kind, metrics)
    who = fields or workflow_fields(workflow_id=job.workflow_id, signal_id=job.signal_id)
    log.warning(LogEvent.ERROR, extra={**who, **error_fields(exc, kind, failure.consecutive_errors)})
    if failure.disabled:
        metrics.count(MetricName.WORKFLOWS_AUTO_DISABLED)
        metrics.count(MetricName.WORKFLOWS_STOPPED)
        log.warning(
            LogEvent.WORKFLOW_STOPPED,
            extra={
                **who,
                "reason": StopReason.AUTO_DISABLED,
                "consecutive_errors": failure.consecutive_errors,
            },
        )
    return JobOutcome(JobStatus.FAILED, kind, job.workflow_id)


def count_llm_success(result: LlmResult, metrics: Metrics) -> None:
    metrics.count(MetricName.ANALYSES_COMPLETED)
    metrics.count(MetricName.ANSWERS_RECORDED)
    metrics.timing_ms(MetricName.ANALYSIS_LATENCY_MS, result.latency_ms)
    metrics.count(MetricName.TOKENS_USED, result.answer.usage.total_tokens)
