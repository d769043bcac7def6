"""The `Contexts` port over Postgres: a job's prompt context in one SQL function call.

`setup_job_context` and `position_job_context` (migration `20261201110000_job_context`)
read everything a prompt needs in one statement, so the LLM is shown one consistent
snapshot and the worker pays one round trip. They answer `json` already shaped as the
prompt carries it (column order, numbers as their decimal text, timestamps as
`isoformat()`): this module only wraps the answer in the context models, it formats
nothing itself, so the bytes sent to llm-proxy are the database's.
"""

from __future__ import annotations

from uuid import UUID

from functions.adapters.postgres import Database
from functions.core.errors import DatabaseError
from functions.core.models import PositionContext, PositionSnapshot, SetupContext

# Previous analyses / decisions given to the LLM as context (newest first).
HISTORY = 5


class PostgresContexts:
    """Implements `functions.services.ports.Contexts`: one `Database.call` per context.
    Raises `NotFound` for an unknown workflow or signal (SQLSTATE P0002)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def setup_context(
        self, *, workflow_id: UUID | None = None, signal_id: UUID | None = None
    ) -> SetupContext:
        ctx = self.db.call("setup_job_context", workflow_id=workflow_id, signal_id=signal_id, history=HISTORY)
        if not isinstance(ctx, dict):
            raise DatabaseError(f"setup_job_context answered {type(ctx).__name__}, not an object")
        return SetupContext(
            workflow_id=workflow_id,
            signal_id=UUID(ctx["signal"]["id"]),
            signal=ctx["signal"],
            trader=ctx["trader"],
            previous_analyses=ctx["previous_analyses"],
        )

    def position_context(self, workflow_id: UUID) -> PositionContext:
        ctx = self.db.call("position_job_context", workflow_id=workflow_id, history=HISTORY)
        if not isinstance(ctx, dict):
            raise DatabaseError(f"position_job_context answered {type(ctx).__name__}, not an object")
        return PositionContext(
            workflow_id=workflow_id,
            trader_id=UUID(ctx["trader_id"]),
            position=PositionSnapshot.model_validate(ctx["position"]),
            position_row=ctx["position"],
            recent_decisions=ctx["recent_decisions"],
        )
