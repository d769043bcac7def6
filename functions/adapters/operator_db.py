"""The `OperatorStore` port over Postgres: one SQL function per operator action.

Each function runs in one transaction and records what it changed (`rollbacks`,
`operator_actions`); this module only passes arguments in and the jsonb answer out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from functions.adapters.postgres import Database


def _as_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a jsonb object from the database, got {type(value).__name__}")
    return value


class PostgresOperatorStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def rollback(self, *, actor: str, reason: str | None, tiers: Sequence[str]) -> dict[str, Any]:
        # Not `Database.call`: that sends lists as jsonb, and the tiers are a text[].
        row = self.db.fetch_one(
            "select public.rollback_monitoring(p_actor => %(actor)s, p_reason => %(reason)s,"
            " p_tiers => %(tiers)s::text[]) as result",
            {"actor": actor, "reason": reason, "tiers": list(tiers)},
        )
        return _as_dict(None if row is None else row["result"])

    def list_rollbacks(self, *, limit: int) -> list[dict[str, Any]]:
        rows = self.db.call("list_rollbacks", limit=limit)
        return [_as_dict(r) for r in rows or []]

    def undo_rollback(self, rollback_id: UUID, *, actor: str) -> dict[str, Any]:
        return _as_dict(self.db.call("undo_rollback", rollback_id=rollback_id, actor=actor))

    def resume_workflow(self, workflow_id: UUID, *, actor: str) -> dict[str, Any]:
        return _as_dict(self.db.call("resume_workflow", workflow_id=workflow_id, actor=actor))

    def rollout_status(self) -> dict[str, Any]:
        return _as_dict(self.db.call("rollout_status"))

    def rollout_update(
        self, changes: dict[str, Any], *, actor: str, reason: str | None, dry_run: bool
    ) -> dict[str, Any]:
        return _as_dict(
            self.db.call("rollout_update", changes=changes, actor=actor, reason=reason, dry_run=dry_run)
        )
