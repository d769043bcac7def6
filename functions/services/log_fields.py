"""The fields of the brief's five log lines, built in one place for every path.

The brief's log lines (`Workflow started: signal_id, symbol, interval`, `Candle closed:
symbol-interval, monitors_count`, `Analysis complete: signal_id, decision, confidence,
tokens`, `Workflow stopped: signal_id, reason`, `Error: signal_id, error_message,
consecutive_errors`) are what an operator greps for; a field missing on one path (a
re-analysis, the reconciler, a position) is a blind spot. So each service builds them
here. Powertools drops `None` values from a JSON record, so an absent signal (a
position opened by hand) is logged as `""` rather than vanishing from the record.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from functions.core.models import WorkflowIdentity

ERROR_MESSAGE_MAX = 500


def _id(value: UUID | str | None) -> str:
    return "" if value is None else str(value)


def workflow_fields(
    *,
    workflow_id: UUID | str | None,
    signal_id: UUID | str | None,
    position_id: UUID | str | None = None,
    symbol: str | None = None,
    interval: str | None = None,
) -> dict[str, Any]:
    """Who a line is about: workflow and signal always; position, symbol, interval when known."""
    fields: dict[str, Any] = {"workflow_id": _id(workflow_id), "signal_id": _id(signal_id)}
    if position_id is not None:
        fields["position_id"] = str(position_id)
    if symbol is not None:
        fields["symbol"] = symbol
    if interval is not None:
        fields["interval"] = interval
    return fields


def identity_fields(identity: WorkflowIdentity) -> dict[str, Any]:
    return workflow_fields(
        workflow_id=identity.workflow_id,
        signal_id=identity.signal_id,
        position_id=identity.position_id,
        symbol=identity.symbol,
        interval=identity.interval,
    )


def error_fields(exc: BaseException, kind: str, consecutive_errors: int) -> dict[str, Any]:
    return {
        "error_kind": kind,
        "error_message": str(exc)[:ERROR_MESSAGE_MAX],
        "consecutive_errors": consecutive_errors,
    }
