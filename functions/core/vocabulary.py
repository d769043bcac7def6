"""The words that cross the boundary between Python and SQL, each defined once.

The SQL functions answer with these strings (jsonb) and store them in columns; Python
compares against the enum members, never against string literals. Where a column holds a
closed set, a `check` constraint in `supabase/migrations/20261201108000_vocabulary.sql`
lists exactly these values, and `tests/functional/test_vocabulary_sql.py` reads the
constraints back from `pg_catalog` and asserts they equal the enums below: adding a word
here without a migration (or the other way round) fails the suite.

Open sets are said so: a claim refused for a signal's status answers `signal_<status>`,
and a workflow stopped by an operator keeps the operator's own words, so those two
columns/fields are not constrained.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """What became of one queued job (a worker's answer to the batch processor)."""

    DONE = "done"  # the answer was recorded (whatever the SQL outcome)
    SKIPPED = "skipped"  # the claim was refused: no LLM call, nothing counted
    FAILED = "failed"  # the attempt failed and was recorded against the workflow


class ClaimReason(StrEnum):
    """`claim_candle` / `claim_initial_analysis`: why a claim was granted or refused.
    Also `signal_<status>` for a signal that is no longer open (an open set)."""

    CLAIMED = "claimed"
    LEASE_EXPIRED = "lease_expired"  # taken over from a worker whose lease ran out
    DUPLICATE = "duplicate"
    OLDER_CANDLE = "older_candle"
    STALE = "stale"
    TOKEN_CAP = "token_cap"  # noqa: S105 - a claim reason, not a secret
    INACTIVE = "inactive"
    ENTITY_CLOSED = "entity_closed"
    NOT_FOUND = "not_found"


class SkipReason(StrEnum):
    """Why a job or a webhook starts nothing before any claim: decided in Python from a
    setting, so no SQL column holds it (the claim's own refusals are `ClaimReason`)."""

    # INITIAL_ANALYSIS_BY=platform: the platform's signal trigger owns the initial analysis.
    INITIAL_ANALYSIS_BY_PLATFORM = "initial_analysis_by_platform"


class SetupResult(StrEnum):
    """`record_setup_analysis` / `record_initial_analysis`: what the answer did."""

    CONTINUED = "continued"  # wait: monitoring goes on
    EXPIRED = "expired"  # max_reanalyses reached
    ENTERED = "entered"  # enter_trade: a position was opened
    BAD_SETUP = "bad_setup"
    MONITORING = "monitoring"  # an initial wait registered setup monitoring
    DUPLICATE = "duplicate"  # this (workflow, candle) already had an answer
    NOT_APPLIED = "not_applied"  # recorded, but the workflow or signal moved on meanwhile
    SHADOW = "shadow"  # a shadow-cohort workflow: recorded, nothing applied (`would_apply` says what)


class DecisionResult(StrEnum):
    """`record_management_decision`: what a position-management answer did."""

    APPLIED = "applied"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    SHADOW = "shadow"  # a shadow-cohort workflow: recorded, nothing applied


class ErrorKind(StrEnum):
    """`workflow_errors.error_kind`: why an attempt failed."""

    LLM_UNAVAILABLE = "llm_unavailable"  # down, slow, 5xx, rate limited: an outage
    LLM_INVALID_ANSWER = "llm_invalid_answer"  # an answer that does not fit the contract
    LLM_REJECTED = "llm_rejected"  # the proxy refused our request (4xx)
    RECORD_REJECTED = "record_rejected"  # the database refused what the answer asked for


class LedgerOutcome(StrEnum):
    """`llm_calls.outcome`: one row per llm-proxy call that reported usage. A failed call
    is recorded under its `ErrorKind` (see `ledger_outcomes`)."""

    OK = "ok"
    DUPLICATE = "duplicate"  # a second call for a (workflow, candle) that already had one
    # New outcomes (e.g. a shadow run's) go here, with the same value in the migration's
    # `llm_calls_outcome_known` constraint.


def ledger_outcomes() -> frozenset[str]:
    """Every value `llm_calls.outcome` may hold."""
    return frozenset(LedgerOutcome) | frozenset(ErrorKind)


class RejectionReason(StrEnum):
    """`management_decisions.rejection_reason`: why a proposed action was not applied.
    The guardrails (Python, before the call) and `record_management_decision` (SQL, what
    only the database can know) share these names; SQL re-checks some of the same rules."""

    UNKNOWN_ACTION = "unknown_action"
    POSITION_NOT_OPEN = "position_not_open"
    INVALID_STOP_LOSS = "invalid_stop_loss"
    STOP_LOSS_ON_WRONG_SIDE = "stop_loss_on_wrong_side_of_price"
    STOP_LOSS_LOOSENED = "stop_loss_loosened"
    INVALID_TAKE_PROFIT = "invalid_take_profit"
    TAKE_PROFIT_ON_WRONG_SIDE = "take_profit_on_wrong_side_of_price"
    REDUCE_FRACTION_OUT_OF_RANGE = "reduce_fraction_out_of_range"
    REDUCE_LEAVES_NO_SIZE = "reduce_leaves_no_size"
    # Only SQL decides these:
    STALE_CANDLE = "stale_candle"
    POSITION_CHANGED = "position_changed"  # the row's version moved since the prompt was built
    INVALID_PRICE = "invalid_price"
    REJECTED = "rejected"  # a reject verdict that came without a reason


class StopReason(StrEnum):
    """The `workflow_schedules.stopped_reason` values the system writes itself. Not a
    closed set: `signal_<status>` / `position_<status>` follow the platform's statuses and
    an operator's stop keeps the operator's words."""

    ENTERED = "entered"
    MAX_REANALYSES = "max_reanalyses"
    BAD_SETUP = "bad_setup"
    AUTO_DISABLED = "auto_disabled"
    POSITION_CLOSED = "position_closed"
    ROLLBACK = "rollback"
    STOPPED_BY_ADMIN = "stopped_by_admin"
    ENTITY_CLOSED = "entity_closed"
