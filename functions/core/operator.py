"""Operator actions as values: who does the initial analysis, what a resume answered.

Rollback, undo, resume and gate changes are SQL functions that record what they changed;
these are the shapes their answers take once they cross into Python (and out of the
admin API), plus the pure parsing of operator input (ids, gate changes).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from functions.core.errors import InvalidInput


class InitialAnalysisBy(StrEnum):
    """Who analyses a new signal first. The platform's own trigger (its migration 028:
    signal INSERT → llm-proxy → `signal_analyses`) in deployed stages; cmon where no such
    trigger exists (the demo, local runs). Never both: that would be two paid calls."""

    PLATFORM = "platform"
    CMON = "cmon"


class ResumeResult(BaseModel):
    """What `resume_workflow` answered: `resumed`, `already_active` or `refused` (with why)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    action: Literal["resumed", "already_active", "refused"]
    workflow_id: UUID
    reason: str | None = None
    workflow_type: str | None = None
    symbol: str | None = None
    interval: str | None = None
    previous_reason: str | None = None


def parse_id(value: str | UUID, what: str) -> UUID:
    """An operator-typed id, or a clear InvalidInput naming what it should have been."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value).strip())
    except ValueError as exc:
        raise InvalidInput(f"{what}: {value!r} is not a UUID", field=what) from exc


def gate_changes(
    *,
    percent: int | None = None,
    tiers: list[str] | None = None,
    allow: list[str] | None = None,
    deny: list[str] | None = None,
    enabled: bool | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The keys of `rollout_settings` to change, from the operator's options.

    Only what was given is changed. `tiers=[]` means every tier (stored as null). `extra`
    carries columns other options own (e.g. `daily_token_cap`), passed through as is:
    `rollout_update` refuses any key that is not a column.
    """
    changes: dict[str, Any] = {}
    if percent is not None:
        if not 0 <= percent <= 100:
            raise InvalidInput(f"percent: {percent} is not within 0..100", field="percent")
        changes["percent"] = percent
    if tiers is not None:
        changes["tiers"] = sorted(set(tiers)) or None
    if allow is not None:
        changes["allow_user_ids"] = [str(parse_id(u, "allow")) for u in allow]
    if deny is not None:
        changes["deny_user_ids"] = [str(parse_id(u, "deny")) for u in deny]
    if enabled is not None:
        changes["enabled"] = enabled
    changes.update({k: v for k, v in (extra or {}).items() if v is not None})
    return changes
