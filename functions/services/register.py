"""Webhook use case: a row changed in Supabase; start, stop or queue what it implies.

Idempotent by construction: registration is a unique key in SQL, so the same webhook
twice, or two out of order, leave one workflow. The answer says what happened.
"""

from __future__ import annotations

import logging
from typing import Any

from functions.core.contracts import AnalysisJob, JobKind
from functions.core.errors import PublishError
from functions.core.models import Registration
from functions.core.operator import InitialAnalysisBy
from functions.core.telemetry import SERVICE, LogEvent, MetricName
from functions.core.vocabulary import SkipReason
from functions.core.webhooks import CommandKind, parse_payload, route
from functions.services.log_fields import identity_fields
from functions.services.ports import JobQueue, Metrics, RegistrationStore

log = logging.getLogger(f"{SERVICE}.register")


def handle_webhook(
    body: Any,
    *,
    repo: RegistrationStore,
    queue: JobQueue | None,
    metrics: Metrics,
    max_reanalyses: int,
    initial_analysis_by: InitialAnalysisBy = InitialAnalysisBy.CMON,
) -> dict[str, Any]:
    """Apply one Supabase webhook; raises InvalidInput (→ 422) before writing anything.

    With `initial_analysis_by=platform` a signal INSERT starts nothing here: the platform's
    own trigger analyses it, and a second analysis would be a second paid LLM call."""
    payload = parse_payload(body)
    command = route(payload)
    metrics.count(MetricName.WEBHOOKS_RECEIVED)

    result: Registration
    if command.kind is CommandKind.REGISTER_SETUP:
        assert command.entity_id is not None
        result = repo.register_setup_monitoring(command.entity_id, max_reanalyses)
    elif command.kind is CommandKind.REGISTER_POSITION:
        assert command.entity_id is not None
        result = repo.register_position_management(command.entity_id)
    elif command.kind is CommandKind.STOP_POSITION:
        assert command.entity_id is not None and command.reason is not None
        result = repo.stop_position_management(command.entity_id, command.reason)
    elif command.kind is CommandKind.QUEUE_INITIAL_ANALYSIS:
        assert command.entity_id is not None
        if initial_analysis_by is InitialAnalysisBy.PLATFORM:
            return {
                "action": "ignored",
                "reason": SkipReason.INITIAL_ANALYSIS_BY_PLATFORM,
                "table": payload.table,
            }
        wanted, reason = repo.initial_analysis_wanted(command.entity_id)
        if not wanted:
            return {"action": "ignored", "reason": reason, "table": payload.table}
        if queue is None:
            raise PublishError("no job queue configured (SETUP_QUEUE_URL)")
        queue.send_jobs([AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=command.entity_id)])
        return {"action": "queued", "signal_id": str(command.entity_id), "table": payload.table}
    else:
        return {"action": "ignored", "reason": command.reason, "table": payload.table}

    if result.action == "registered":
        metrics.count(MetricName.WORKFLOWS_STARTED)
        assert result.workflow_id is not None
        log.info(
            LogEvent.WORKFLOW_STARTED,
            extra={
                **identity_fields(repo.workflow_identity(result.workflow_id)),
                "via": "webhook",
                "table": payload.table,
            },
        )
    elif result.action == "stopped":
        metrics.count(MetricName.WORKFLOWS_STOPPED)
        assert result.workflow_id is not None
        log.info(
            LogEvent.WORKFLOW_STOPPED,
            extra={
                **identity_fields(repo.workflow_identity(result.workflow_id)),
                "reason": command.reason,
                "via": "webhook",
                "table": payload.table,
            },
        )
    answer: dict[str, Any] = {"action": result.action, "table": payload.table}
    if result.workflow_id is not None:
        answer["workflow_id"] = str(result.workflow_id)
    if result.reason is not None:
        answer["reason"] = result.reason
    return answer
