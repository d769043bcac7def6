"""Supabase database webhooks: the payload, and what each row means for us.

The body is what `supabase_functions.http_request` sends (see shared/fixtures/supabase):
`{"type", "table", "record", "schema", "old_record"}`; INSERT has `old_record: null`,
DELETE has `record: null`; numbers keep their scale (`0.00150000`) and timestamps carry
the session's offset. We read only the ids and the fields that route the row, then
reload the row from the database: a webhook can arrive late or out of order, the table
is the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from functions.core.errors import InvalidInput


class WebhookPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    type: Literal["INSERT", "UPDATE", "DELETE"]
    table: str = Field(min_length=1)
    schema_: str = Field(alias="schema", min_length=1)
    record: dict[str, Any] | None = None
    old_record: dict[str, Any] | None = None


class CommandKind(StrEnum):
    REGISTER_SETUP = "register_setup"
    REGISTER_POSITION = "register_position"
    STOP_POSITION = "stop_position"
    QUEUE_INITIAL_ANALYSIS = "queue_initial_analysis"
    IGNORE = "ignore"


@dataclass(frozen=True)
class Command:
    kind: CommandKind
    entity_id: UUID | None = None
    reason: str | None = None


def parse_payload(body: Any) -> WebhookPayload:
    """Validate the envelope; raise InvalidInput naming the offending field."""
    try:
        payload = WebhookPayload.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"{field}: {first['msg']}", field=field) from exc
    if payload.type in ("INSERT", "UPDATE") and payload.record is None:
        raise InvalidInput(f"record: required for {payload.type}", field="record")
    if payload.type == "DELETE" and payload.old_record is None:
        raise InvalidInput("old_record: required for DELETE", field="old_record")
    return payload


def _uuid(row: dict[str, Any], key: str, where: str) -> UUID:
    value = row.get(key)
    if value is None:
        raise InvalidInput(f"{where}.{key}: field required", field=f"{where}.{key}")
    try:
        return UUID(str(value))
    except ValueError as exc:
        raise InvalidInput(f"{where}.{key}: not a UUID", field=f"{where}.{key}") from exc


def route(payload: WebhookPayload) -> Command:
    """What a row change means: start, stop, queue, or nothing. Pure."""
    if payload.schema_ != "public":
        return Command(CommandKind.IGNORE, reason="other_schema")
    # A DELETE describes the row that was: always read old_record for it.
    where = "old_record" if payload.type == "DELETE" else "record"
    row = payload.old_record if payload.type == "DELETE" else payload.record
    assert row is not None  # guaranteed by parse_payload

    if payload.table == "signal_analyses":
        if payload.type != "INSERT":
            return Command(CommandKind.IGNORE, reason="not_an_insert")
        analysis_id = _uuid(row, "id", where)
        if row.get("decision") != "wait":
            return Command(CommandKind.IGNORE, analysis_id, reason="decision_not_wait")
        return Command(CommandKind.REGISTER_SETUP, analysis_id)

    if payload.table == "positions":
        position_id = _uuid(row, "id", where)
        if payload.type == "DELETE":
            return Command(CommandKind.STOP_POSITION, position_id, reason="position_deleted")
        if row.get("status") == "closed":
            return Command(CommandKind.STOP_POSITION, position_id, reason="position_closed")
        if row.get("status") == "open":
            return Command(CommandKind.REGISTER_POSITION, position_id)
        return Command(CommandKind.IGNORE, position_id, reason="position_status")

    if payload.table == "signals":
        if payload.type != "INSERT":
            return Command(CommandKind.IGNORE, reason="not_an_insert")
        return Command(CommandKind.QUEUE_INITIAL_ANALYSIS, _uuid(row, "id", where))

    return Command(CommandKind.IGNORE, reason="other_table")
