"""The ports the services need; adapters implement them, handlers wire them.

Services import only these protocols (import-linter forbids them from importing
adapters), so each use case can be driven in a test by a real adapter or a small fake.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from functions.core.contracts import AnalysisJob, CandleClosed, WorkflowType
from functions.core.errors import CallUsage
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


class Clock(Protocol):
    """What time it is for the system: the wall clock live, the replayed candle's time in
    `cmon replay`, so staleness is judged against the market being played."""

    def __call__(self) -> datetime: ...


class LlmProxy(Protocol):
    """llm-proxy over HTTP. Raises `LlmProxyUnavailable`, `LlmProxyRejected` or
    `LlmProxyInvalidAnswer`; never an httpx error.

    `deadline` is a `time.monotonic()` instant after which no retry is started (the
    Lambda's remaining time), `None` for no limit beyond the client's own timeouts.
    """

    def analyze_signal(
        self, request: AnalyzeSignalRequest, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult: ...

    def manage_position(
        self, request: ManagePositionRequest, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult: ...


class JobQueue(Protocol):
    """Sends analysis jobs to the queue of their workflow type."""

    def send_jobs(self, jobs: Sequence[AnalysisJob]) -> int:
        """Send every job (re-sending only failed entries); return how many were sent.
        Raises `PublishError` if some could not be sent after retries."""
        ...


class Metrics(Protocol):
    """Counts and timings under the project's namespace (EMF in Lambda)."""

    def count(self, name: MetricName, value: float = 1) -> None: ...

    def timing_ms(self, name: MetricName, value: float) -> None: ...


class Registrations(Protocol):
    """Start and stop workflows (the webhooks, the reconciler): `register_*`/`stop_*` SQL
    functions, each idempotent (a second call answers `already_*`)."""

    def register_setup_monitoring(self, analysis_id: UUID, max_reanalyses: int) -> Registration: ...
    def register_position_management(self, position_id: UUID) -> Registration: ...
    def stop_position_management(self, position_id: UUID, reason: str) -> Registration: ...
    def stop_workflow(self, workflow_id: UUID, reason: str) -> Registration: ...
    def initial_analysis_wanted(self, signal_id: UUID) -> tuple[bool, str]: ...


class Claims(Protocol):
    """Take a (workflow, candle) or a signal's initial analysis: compare-and-set in SQL, so
    a second delivery finds it taken (`ClaimReason`)."""

    def claim_candle(
        self, workflow_id: UUID, candle_time: datetime, lease_s: int, stale_intervals: int | None = None
    ) -> ClaimResult: ...
    def claim_initial_analysis(self, signal_id: UUID, lease_s: int) -> ClaimResult: ...


class Contexts(Protocol):
    """What a prompt needs, read as one snapshot in one round trip (the Postgres adapter
    calls `setup_job_context` / `position_job_context` once). The dicts are the prompt's
    JSON as llm-proxy receives it: numbers as decimal strings, times as ISO 8601. Raises
    `NotFound` for an unknown workflow or signal."""

    def setup_context(
        self, *, workflow_id: UUID | None = None, signal_id: UUID | None = None
    ) -> SetupContext: ...
    def position_context(self, workflow_id: UUID) -> PositionContext: ...


class Recorder(Protocol):
    """Record an answer (or a failed attempt) and apply it, one transaction each; every
    call that reported usage also writes its `llm_calls` ledger row."""

    def record_setup_analysis(
        self, workflow_id: UUID, candle: CandleClosed, answer: SetupAnswer, latency_ms: int
    ) -> SetupOutcome: ...
    def record_initial_analysis(
        self, signal_id: UUID, answer: SetupAnswer, latency_ms: int, max_reanalyses: int
    ) -> SetupOutcome: ...
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
    ) -> DecisionOutcome: ...
    def record_workflow_failure(
        self,
        workflow_id: UUID,
        candle_time: datetime | None,
        kind: str,
        message: str,
        max_errors: int,
        *,
        usage: CallUsage | None = None,
    ) -> FailureOutcome: ...
    def record_initial_failure(
        self,
        signal_id: UUID,
        kind: str,
        message: str,
        *,
        release_claim: bool = False,
        usage: CallUsage | None = None,
    ) -> None: ...


class CandleWorkflows(Protocol):
    """The fan-out's read: the active workflows of a candle's stream."""

    def workflows_for_candle(self, candle: CandleClosed) -> list[tuple[UUID, WorkflowType]]:
        """Active workflows of the candle's stream — its market, symbol and interval —
        that have not claimed it yet."""
        ...


class Reconciliation(Protocol):
    """The scheduled repair of what a lost webhook missed."""

    def reconcile(self, max_reanalyses: int) -> ReconcileOutcome: ...
    def signals_missing_initial_analysis(self) -> list[UUID]: ...


class Ledger(Protocol):
    def rollout_admitted_share(self) -> float:
        """Share (0..1) of users the rollout gate admits now (the token projection's scale)."""
        ...


class Identities(Protocol):
    """What the brief's log lines name (read only when a workflow starts, stops or fails)."""

    def workflow_identity(self, workflow_id: UUID) -> WorkflowIdentity: ...
    def initial_failure_count(self, signal_id: UUID) -> int: ...


class JobStore(Claims, Contexts, Recorder, Identities, Protocol):
    """What one analysis job needs (setup or position): claim, read, record, name."""


class RegistrationStore(Registrations, Identities, Protocol):
    """What the webhooks' register/stop service needs."""


class ReconcileStore(Reconciliation, Ledger, Identities, Protocol):
    """What the scheduled reconciler needs."""


class Repository(
    Registrations, Claims, Contexts, Recorder, CandleWorkflows, Reconciliation, Ledger, Identities, Protocol
):
    """Every role the Postgres adapter serves, through the SQL functions that hold the
    invariants: what a handler's container holds. Services ask for the role they use.

    Raises `DatabaseUnavailable` (transient: the message is redelivered) or
    `DatabaseError`/`NotFound`; never a driver error.
    """


class AdminReads(Protocol):
    """What the admin API and `cmon workflows` show (read only; `NotFound` for an unknown id)."""

    def list_workflows(
        self,
        *,
        active: bool | None = None,
        workflow_type: str | None = None,
        symbol: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]: ...
    def workflow_detail(self, workflow_id: UUID) -> dict[str, Any]: ...


class OperatorStore(Protocol):
    """The operator's SQL functions (rollback, undo, resume, gate), each one transaction
    that records what it changed. Answers are the functions' jsonb as dicts. Raises
    `NotFound` for an unknown rollback or workflow, `DatabaseError` for a refused change."""

    def rollback(self, *, actor: str, reason: str | None, tiers: Sequence[str]) -> dict[str, Any]: ...
    def list_rollbacks(self, *, limit: int) -> list[dict[str, Any]]: ...
    def undo_rollback(self, rollback_id: UUID, *, actor: str) -> dict[str, Any]: ...
    def resume_workflow(self, workflow_id: UUID, *, actor: str) -> dict[str, Any]: ...
    def rollout_status(self) -> dict[str, Any]: ...
    def rollout_update(
        self, changes: dict[str, Any], *, actor: str, reason: str | None, dry_run: bool
    ) -> dict[str, Any]: ...
