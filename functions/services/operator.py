"""The operator's facade: rollback, undo, resume and the rollout gate.

`cmon` and the admin API are two thin faces of this one module, so both validate the
same way and answer the same shapes. Every change is one SQL function (through the
`OperatorStore` port) that records who did what, when and to which rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from functions.core.errors import InvalidInput
from functions.core.operator import ResumeResult, gate_changes, parse_id
from functions.core.telemetry import SERVICE
from functions.services.ports import OperatorStore

log = logging.getLogger(f"{SERVICE}.operator")

TIERS = ("free", "pro", "elite")


def _flat_gate(status: dict[str, Any]) -> dict[str, Any]:
    """The gate row's columns at the top level, then the counts (what scripts read)."""
    settings = dict(status.get("settings") or {})
    settings.pop("id", None)
    return settings | {k: v for k, v in status.items() if k != "settings"}


@dataclass(frozen=True)
class Operator:
    store: OperatorStore
    actor: str

    def rollback(self, *, reason: str | None = None, tiers: Sequence[str] = ("elite",)) -> dict[str, Any]:
        unknown = sorted(set(tiers) - set(TIERS))
        if unknown or not tiers:
            raise InvalidInput(f"tiers: {unknown or 'none given'} (choose from {', '.join(TIERS)})", "tiers")
        result = self.store.rollback(actor=self.actor, reason=reason, tiers=list(tiers))
        log.warning(
            "Rollback",
            extra={
                "rollback_id": result.get("rollback_id"),
                "actor": self.actor,
                "workflows_stopped": result.get("workflows_stopped"),
                "traders_disabled": result.get("traders_disabled"),
            },
        )
        return result

    def list_rollbacks(self, *, limit: int = 50) -> list[dict[str, Any]]:
        if limit < 1:
            raise InvalidInput(f"limit: {limit} must be at least 1", "limit")
        return self.store.list_rollbacks(limit=limit)

    def undo_rollback(self, rollback_id: str | UUID) -> dict[str, Any]:
        result = self.store.undo_rollback(parse_id(rollback_id, "rollback_id"), actor=self.actor)
        log.warning(
            "Rollback undone", extra={"rollback_id": str(rollback_id), "action": result.get("action")}
        )
        return result

    def resume_workflow(self, workflow_id: str | UUID) -> ResumeResult:
        result = ResumeResult.model_validate(
            self.store.resume_workflow(parse_id(workflow_id, "workflow_id"), actor=self.actor)
        )
        log.info(
            "Workflow resume",
            extra={"workflow_id": str(result.workflow_id), "action": result.action, "reason": result.reason},
        )
        return result

    def rollout_status(self) -> dict[str, Any]:
        return _flat_gate(self.store.rollout_status())

    def rollout_update(
        self,
        *,
        percent: int | None = None,
        tiers: list[str] | None = None,
        allow: list[str] | None = None,
        deny: list[str] | None = None,
        enabled: bool | None = None,
        extra: dict[str, Any] | None = None,
        reason: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Change only what was given; with `dry_run` preview the counts, write nothing."""
        changes = gate_changes(
            percent=percent, tiers=tiers, allow=allow, deny=deny, enabled=enabled, extra=extra
        )
        if tiers and set(tiers) - set(TIERS):
            raise InvalidInput(f"tiers: choose from {', '.join(TIERS)}", "tiers")
        if not changes and not dry_run:
            raise InvalidInput("nothing to change: give at least one option (see --help)", "changes")
        result = self.store.rollout_update(changes, actor=self.actor, reason=reason, dry_run=dry_run)
        after = dict(result.get("after") or {})
        after.pop("id", None)
        return after | {k: v for k, v in result.items() if k != "after"}
