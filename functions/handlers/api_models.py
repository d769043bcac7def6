"""What the API says it accepts and answers: the models its OpenAPI is generated from.

Clients (Supabase's webhook sender, the admin tools) and schemathesis in CI read the
OpenAPI, so every route names its response model and every status it can return. A new
route follows the same pattern: `response_model=<Model>` and
`responses={**ADMIN_ERRORS, **NOT_FOUND_ERROR}` (or whichever of the error groups apply).

Text that reaches Postgres is `DbText`: Postgres `text` cannot hold NUL, and nothing we
store needs more than a few hundred characters, so both are a 422 naming the field
instead of a database error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from functions.core.webhooks import WebhookPayload

# Postgres text refuses U+0000; everything else (any other code point) it stores.
NO_NUL = r"^[^\x00]*$"
MAX_TEXT = 200
DbText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)]


class ErrorBody(BaseModel):
    """Every non-2xx answer: a stable `error` code, the offending `field` when there is one."""

    error: str = Field(description="unauthorized | invalid_payload | invalid_request | not_found | …")
    field: str | None = Field(default=None, description="dotted path of the offending input, for 422")
    detail: str | None = None
    reason: str | None = Field(default=None, description="why a change was refused, for 409")


def _errors(*statuses: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": text} for status, text in statuses}


AUTH_ERROR = _errors((401, "Missing or wrong secret; nothing was read or written."))
VALIDATION_ERROR = _errors((422, "Malformed input; `field` names it; nothing was written."))
UNAVAILABLE_ERROR = _errors((503, "The database is unreachable; retry later."))
NOT_FOUND_ERROR = _errors((404, "No such workflow."))
ADMIN_ERRORS = {**AUTH_ERROR, **VALIDATION_ERROR, **UNAVAILABLE_ERROR}


class Health(BaseModel):
    status: Literal["ok"]


# --- webhook -----------------------------------------------------------------------------

_UUID_STRING = {"type": "string", "format": "uuid"}
_ROW = {"type": "object"}


def _row_with_id() -> dict[str, Any]:
    return {"type": "object", "required": ["id"], "properties": {"id": _UUID_STRING}}


def _when(schema_table: tuple[str, str] | None, ops: list[str], then: dict[str, Any]) -> dict[str, Any]:
    cond: dict[str, Any] = {"properties": {"type": {"enum": ops}}, "required": ["type"]}
    if schema_table is not None:
        cond["properties"] |= {"schema": {"const": schema_table[0]}, "table": {"const": schema_table[1]}}
        cond["required"] = ["type", "schema", "table"]
    return {"if": cond, "then": then}


def _needs(key: str, row: dict[str, Any]) -> dict[str, Any]:
    return {"required": [key], "properties": {key: row}}


# What functions.core.webhooks.parse_payload and route() refuse, as JSON Schema, so that a
# body the schema admits is never a 422 and a body it refuses always is.
_WEBHOOK_RULES: list[dict[str, Any]] = [
    _when(None, ["INSERT", "UPDATE"], _needs("record", _ROW)),
    _when(None, ["DELETE"], _needs("old_record", _ROW)),
    _when(("public", "signal_analyses"), ["INSERT"], _needs("record", _row_with_id())),
    _when(("public", "signals"), ["INSERT"], _needs("record", _row_with_id())),
    _when(("public", "positions"), ["INSERT", "UPDATE"], _needs("record", _row_with_id())),
    _when(("public", "positions"), ["DELETE"], _needs("old_record", _row_with_id())),
]


def _extra_rules(schema: dict[str, Any]) -> None:
    schema["allOf"] = _WEBHOOK_RULES


class SupabaseWebhook(WebhookPayload):
    """The body `supabase_functions.http_request` sends (documented here; parsed by the core).

    Keys in jsonb order `type, table, record, schema, old_record`; INSERT has
    `old_record: null`, DELETE `record: null`. Rows of `signal_analyses` (INSERT),
    `signals` (INSERT) and `positions` must carry their `id`; other rows start nothing.
    """

    model_config = ConfigDict(json_schema_extra=_extra_rules)


class WebhookAnswer(BaseModel):
    action: Literal["registered", "already_registered", "stopped", "already_stopped", "ignored", "queued"]
    table: str
    workflow_id: UUID | None = None
    signal_id: UUID | None = None
    reason: str | None = None


# --- workflows ---------------------------------------------------------------------------


class Workflow(BaseModel):
    """A `workflow_schedules` row; columns added later pass through unchanged."""

    model_config = ConfigDict(extra="allow")

    id: UUID
    workflow_type: Literal["setup_monitoring", "position_management"]
    signal_id: UUID | None
    position_id: UUID | None
    symbol: str
    interval: str
    is_active: bool
    last_candle_time: str | None
    consecutive_errors: int
    stopped_reason: str | None


class WorkflowList(BaseModel):
    workflows: list[Workflow]
    count: int


class WorkflowDetail(Workflow):
    analyses: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    errors: list[dict[str, Any]]


class WorkflowAction(BaseModel):
    action: str = Field(description="stopped | already_stopped (resume: resumed | already_active …)")
    workflow_id: UUID
