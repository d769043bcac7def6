"""Reconciler use case (every minute): make the webhook fast path complete.

Supabase webhooks never retry and may arrive out of order, so a lost one would leave a
`wait` unmonitored or a closed position managed. The SQL function finds and fixes both;
this reports what it fixed and publishes the active-workflow gauges for the dashboard.
"""

from __future__ import annotations

import logging

from functions.core.contracts import AnalysisJob, JobKind
from functions.core.models import ReconcileOutcome
from functions.core.operator import InitialAnalysisBy
from functions.core.telemetry import SERVICE, LogEvent, MetricName
from functions.services.log_fields import identity_fields
from functions.services.ports import JobQueue, Metrics, ReconcileStore

log = logging.getLogger(f"{SERVICE}.reconciler")


def reconcile(
    *,
    repo: ReconcileStore,
    metrics: Metrics,
    max_reanalyses: int,
    queue: JobQueue | None = None,
    initial_analysis_by: InitialAnalysisBy = InitialAnalysisBy.CMON,
) -> ReconcileOutcome:
    """Fix what lost webhooks missed. The initial-analysis re-queue is cmon's own initial
    path: with `initial_analysis_by=platform` the platform's trigger owns it and it never runs."""
    outcome = repo.reconcile(max_reanalyses)
    if queue is not None and initial_analysis_by is InitialAnalysisBy.CMON:
        # Signals whose INSERT webhook was lost never had their initial analysis queued.
        missing = repo.signals_missing_initial_analysis()
        if missing:
            queue.send_jobs([AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=s) for s in missing])
            outcome = outcome.model_copy(update={"initial_queued": missing})
    fixes = (
        len(outcome.registered_setup)
        + len(outcome.registered_positions)
        + len(outcome.stopped)
        + len(outcome.initial_queued)
    )
    metrics.count(MetricName.RECONCILER_FIXES, fixes)
    metrics.count(MetricName.ACTIVE_SETUP_WORKFLOWS, outcome.active_setup)
    metrics.count(MetricName.ACTIVE_POSITION_WORKFLOWS, outcome.active_positions)
    # The token alarms divide by the projection times this share (template.yaml).
    metrics.count(MetricName.ROLLOUT_ADMITTED_PERCENT, round(100 * repo.rollout_admitted_share(), 2))
    started = len(outcome.registered_setup) + len(outcome.registered_positions)
    if started:
        metrics.count(MetricName.WORKFLOWS_STARTED, started)
    if outcome.stopped:
        metrics.count(MetricName.WORKFLOWS_STOPPED, len(outcome.stopped))
    for wf in (*outcome.registered_setup, *outcome.registered_positions):
        identity = repo.workflow_identity(wf)
        log.info(LogEvent.WORKFLOW_STARTED, extra={**identity_fields(identity), "via": "reconciler"})
    for wf in outcome.stopped:
        identity = repo.workflow_identity(wf)
        log.info(
            LogEvent.WORKFLOW_STOPPED,
            extra={
                **identity_fields(identity),
                "reason": identity.stopped_reason or "entity_closed",
                "via": "reconciler",
            },
        )
    log.info(
        "Reconciled",
        extra={
            "fixes": fixes,
            "active_setup": outcome.active_setup,
            "active_positions": outcome.active_positions,
        },
    )
    return outcome
