"""The one catalogue of CloudWatch metric names and log events.

The dashboard and alarms in `template.yaml` name metrics by these strings; a test scans
the code for `MetricName.<X>` uses and the template for metric names and checks that
every metric the template watches is one the code emits. Keep names stable: renaming
one silently blinds an alarm.
"""

from __future__ import annotations

from enum import StrEnum

NAMESPACE = "Cmon"
SERVICE = "cmon"
# Every metric carries the Powertools `service` dimension plus `stage`, so that dev and
# prod stacks in one account never mix their numbers.
STAGE_DIMENSION = "stage"


class MetricName(StrEnum):
    # Workers
    ANALYSES_COMPLETED = "AnalysesCompleted"
    ANALYSIS_ERRORS = "AnalysisErrors"
    ANALYSIS_LATENCY_MS = "AnalysisLatencyMs"
    TOKENS_USED = "TokensUsed"
    MANAGEMENT_DECISIONS = "ManagementDecisions"
    GUARDRAIL_REJECTIONS = "GuardrailRejections"
    PAPER_FILLS = "PaperFills"
    # Answers of shadow workflows: recorded, never applied (the shadow cohort of the gate).
    SHADOW_ANALYSES = "ShadowAnalyses"
    # The canary's pair, also emitted per function version (VERSIONED below): answers
    # recorded, and failures a version can cause (llm_invalid_answer, llm_rejected,
    # record_rejected), so a version whose analyses all fail "cleanly" rolls back.
    ANSWERS_RECORDED = "AnswersRecorded"
    ANSWER_ERRORS = "AnswerErrors"
    # Claims refused before any LLM call: too old a candle, or the user's daily token cap.
    STALE_JOBS_SKIPPED = "StaleJobsSkipped"
    TOKEN_CAP_SKIPPED = "TokenCapSkipped"  # noqa: S105 - a metric name, not a secret
    # Dedup: a refused claim is harmless; a duplicate *processed* is a bug (alarm).
    DUPLICATE_CLAIMS_SKIPPED = "DuplicateClaimsSkipped"
    DUPLICATE_CANDLES_PROCESSED = "DuplicateCandlesProcessed"
    # Workflow lifecycle
    WORKFLOWS_STARTED = "WorkflowsStarted"
    WORKFLOWS_STOPPED = "WorkflowsStopped"
    WORKFLOWS_AUTO_DISABLED = "WorkflowsAutoDisabled"
    ACTIVE_SETUP_WORKFLOWS = "ActiveSetupWorkflows"
    ACTIVE_POSITION_WORKFLOWS = "ActivePositionWorkflows"
    # Fan-out
    CANDLES_RECEIVED = "CandlesReceived"
    JOBS_ENQUEUED = "JobsEnqueued"
    STALE_CANDLES_SKIPPED = "StaleCandlesSkipped"
    # API and reconciler
    WEBHOOKS_RECEIVED = "WebhooksReceived"
    RECONCILER_FIXES = "ReconcilerFixes"
    # Feed service
    FEED_CANDLES_PUBLISHED = "FeedCandlesPublished"
    FEED_CANDLES_BACKFILLED = "FeedCandlesBackfilled"
    FEED_DUPLICATES_DROPPED = "FeedDuplicatesDropped"
    FEED_RECONNECTS = "FeedReconnects"
    FEED_PUBLISH_LAG_MS = "FeedPublishLagMs"
    # Reconciler: share of users the rollout gate admits, 0-100 (the token alarm's
    # projection scales with it).
    ROLLOUT_ADMITTED_PERCENT = "RolloutAdmittedPercent"

    # One value per stream per flush: seconds overdue since its expected next close.
    FEED_STREAM_LAG_S = "FeedStreamLagSeconds"
    # One per process start: more than one in a window means the task restarts.
    FEED_PROCESS_STARTS = "FeedProcessStarts"


# Emitted a second time with the dimensions below, so that a deployment's alarm selects
# the new version's numbers alone (the `live` alias mixes old and new during a canary).
VERSIONED = frozenset({MetricName.ANSWERS_RECORDED, MetricName.ANSWER_ERRORS})
FUNCTION_DIMENSION = "function"
VERSION_DIMENSION = "version"


class LogEvent(StrEnum):
    """The brief's log lines, as the `message` of structured JSON log records."""

    WORKFLOW_STARTED = "Workflow started"
    CANDLE_CLOSED = "Candle closed"
    ANALYSIS_COMPLETE = "Analysis complete"
    DECISION_RECORDED = "Management decision"  # applied or rejected: `outcome` says which
    WORKFLOW_STOPPED = "Workflow stopped"
    ERROR = "Error"
