"""Supabase webhook bodies: the envelope (`parse_payload`) and what a row means (`route`).

Inputs are the real pg_net recordings in tests/events/supabase/ (illustrative tables with
integer ids) and hypothesis-generated envelopes; the only exception either function may
raise is `InvalidInput`, naming the offending field.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.core.errors import InvalidInput
from functions.core.webhooks import Command, CommandKind, WebhookPayload, parse_payload, route

EVENTS = Path(__file__).resolve().parents[1] / "events" / "supabase"
BODY_FILES = sorted(EVENTS.glob("*.body.json"))
ID = UUID("6f1c2b7e-3d4a-4c1e-9b2a-0d5e8f7a1c33")
OTHER_ID = UUID("0b0e4bb4-8d0b-4f4e-a3a7-1d2a3b4c5d6e")


def load(text: str) -> Any:
    """As the API reads a body: numbers with a fraction become Decimal, scale kept."""
    return json.loads(text, parse_float=Decimal)


def raw_bodies() -> list[str]:
    """Every exact request body recorded from pg_net."""
    bodies = [path.read_text() for path in BODY_FILES]
    captured = json.loads((EVENTS / "pg_net_captured_requests.json").read_text())
    bodies += [request["body_raw"] for request in captured["requests"]]
    for line in (EVENTS / "pg_net_captured_tz_and_noop_update.jsonl").read_text().splitlines():
        if line.strip():
            bodies.append(json.loads(line)["body_raw"])
    return bodies


def envelope(kind: str, table: str, row: dict[str, Any] | None, *, schema: str = "public") -> dict[str, Any]:
    """An envelope in Supabase's shape: INSERT/UPDATE carry `record`, DELETE `old_record`."""
    return {
        "type": kind,
        "table": table,
        "record": None if kind == "DELETE" else row,
        "schema": schema,
        "old_record": row if kind != "INSERT" else None,
    }


def routed(body: Any) -> Command:
    return route(parse_payload(body))


# --- the recordings -----------------------------------------------------------------------


def test_the_recordings_are_present() -> None:
    names = {p.name for p in BODY_FILES}
    assert {
        "webhook_insert_signal_analyses.body.json",
        "webhook_insert_positions.body.json",
        "webhook_update_positions.body.json",
        "webhook_delete_positions.body.json",
    } <= names
    assert len(raw_bodies()) > len(BODY_FILES)


@pytest.mark.parametrize("text", raw_bodies(), ids=lambda t: t[:48])
@pytest.mark.parametrize("parser", [load, json.loads], ids=["decimal", "float"])
def test_every_recorded_body_parses_and_routes_or_names_the_field(text: str, parser: Any) -> None:
    body = parser(text)
    payload = parse_payload(body)
    assert payload.table == body["table"]
    assert payload.schema_ == "public"
    assert payload.type == body["type"]
    row_key = "old_record" if body["type"] == "DELETE" else "record"
    if body["table"] == "positions" and isinstance(body[row_key]["id"], int):
        # The recordings' illustrative `positions` table has integer ids, not UUIDs.
        with pytest.raises(InvalidInput) as caught:
            route(payload)
        assert caught.value.field == f"{row_key}.id"
    else:
        assert isinstance(route(payload), Command)


def test_recorded_signal_analysis_wait_registers_setup_monitoring() -> None:
    body = load((EVENTS / "webhook_insert_signal_analyses.body.json").read_text())
    assert routed(body) == Command(CommandKind.REGISTER_SETUP, ID)


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("webhook_insert_positions.body.json", "record.id"),
        ("webhook_update_positions.body.json", "record.id"),
        ("webhook_delete_positions.body.json", "old_record.id"),
    ],
)
def test_recorded_positions_with_integer_ids_are_invalid_input_on_the_id(name: str, field: str) -> None:
    body = load((EVENTS / name).read_text())
    with pytest.raises(InvalidInput) as caught:
        routed(body)
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("webhook_insert_positions.body.json", Command(CommandKind.REGISTER_POSITION, ID)),
        (
            "webhook_update_positions.body.json",
            Command(CommandKind.STOP_POSITION, ID, reason="position_closed"),
        ),
        (
            "webhook_delete_positions.body.json",
            Command(CommandKind.STOP_POSITION, ID, reason="position_deleted"),
        ),
    ],
)
def test_recorded_positions_route_once_their_ids_are_uuids(name: str, expected: Command) -> None:
    body = load((EVENTS / name).read_text())
    for key in ("record", "old_record"):
        if body[key] is not None:
            body[key]["id"] = str(ID)
    assert routed(body) == expected


def test_numbers_keep_their_scale_in_the_parsed_record() -> None:
    body = load((EVENTS / "webhook_insert_positions.body.json").read_text())
    payload = parse_payload(body)
    assert payload.record is not None
    quantity = payload.record["quantity"]
    assert isinstance(quantity, Decimal)
    assert str(quantity) == "0.00150000"


# --- the routing table ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            envelope("INSERT", "signal_analyses", {"id": str(ID), "decision": "wait"}),
            Command(CommandKind.REGISTER_SETUP, ID),
        ),
        (
            envelope("INSERT", "signal_analyses", {"id": str(ID), "decision": "enter_trade"}),
            Command(CommandKind.IGNORE, ID, reason="decision_not_wait"),
        ),
        (
            envelope("INSERT", "signal_analyses", {"id": str(ID), "decision": "bad_setup"}),
            Command(CommandKind.IGNORE, ID, reason="decision_not_wait"),
        ),
        (
            envelope("INSERT", "signal_analyses", {"id": str(ID), "decision": None}),
            Command(CommandKind.IGNORE, ID, reason="decision_not_wait"),
        ),
        (
            envelope("UPDATE", "signal_analyses", {"id": str(ID), "decision": "wait"}),
            Command(CommandKind.IGNORE, reason="not_an_insert"),
        ),
        (
            envelope("INSERT", "positions", {"id": str(ID), "status": "open"}),
            Command(CommandKind.REGISTER_POSITION, ID),
        ),
        (
            envelope("UPDATE", "positions", {"id": str(ID), "status": "closed"}),
            Command(CommandKind.STOP_POSITION, ID, reason="position_closed"),
        ),
        (
            envelope("UPDATE", "positions", {"id": str(ID), "status": "open"}),  # a no-op UPDATE
            Command(CommandKind.REGISTER_POSITION, ID),
        ),
        (
            envelope("DELETE", "positions", {"id": str(ID), "status": "open"}),
            Command(CommandKind.STOP_POSITION, ID, reason="position_deleted"),
        ),
        (
            envelope("INSERT", "positions", {"id": str(ID), "status": "pending"}),
            Command(CommandKind.IGNORE, ID, reason="position_status"),
        ),
        (
            envelope("INSERT", "signals", {"id": str(ID), "status": "active"}),
            Command(CommandKind.QUEUE_INITIAL_ANALYSIS, ID),
        ),
        (
            envelope("UPDATE", "signals", {"id": str(ID), "status": "expired"}),
            Command(CommandKind.IGNORE, reason="not_an_insert"),
        ),
        (
            envelope("INSERT", "traders", {"id": str(ID)}),
            Command(CommandKind.IGNORE, reason="other_table"),
        ),
        (
            envelope("INSERT", "positions", {"id": str(ID), "status": "open"}, schema="auth"),
            Command(CommandKind.IGNORE, reason="other_schema"),
        ),
        (
            # another schema is ignored before its row is even looked at
            envelope("INSERT", "positions", {"id": 1, "status": "open"}, schema="private"),
            Command(CommandKind.IGNORE, reason="other_schema"),
        ),
    ],
    ids=lambda v: "" if isinstance(v, Command) else f"{v['type']}-{v['schema']}.{v['table']}",
)
def test_routing_table(body: dict[str, Any], expected: Command) -> None:
    assert routed(body) == expected


def test_delete_takes_the_id_from_old_record() -> None:
    body = envelope("DELETE", "positions", {"id": str(OTHER_ID), "status": "closed"})
    assert routed(body).entity_id == OTHER_ID


@pytest.mark.parametrize("kind", ["INSERT", "UPDATE"])
def test_insert_or_update_with_a_null_record_is_invalid_input_on_record(kind: str) -> None:
    body = {"type": kind, "table": "positions", "record": None, "schema": "public", "old_record": None}
    with pytest.raises(InvalidInput) as caught:
        parse_payload(body)
    assert caught.value.field == "record"


def test_delete_with_a_null_old_record_is_invalid_input_on_old_record() -> None:
    body = {"type": "DELETE", "table": "positions", "record": None, "schema": "public", "old_record": None}
    with pytest.raises(InvalidInput) as caught:
        parse_payload(body)
    assert caught.value.field == "old_record"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ("INSERT", "body"),
        (None, "body"),
        (42, "body"),
        ({"table": "positions", "schema": "public", "record": {}}, "type"),
        ({"type": "TRUNCATE", "table": "positions", "schema": "public", "record": {}}, "type"),
        ({"type": "insert", "table": "positions", "schema": "public", "record": {}}, "type"),
        ({"type": "INSERT", "schema": "public", "record": {}}, "table"),
        ({"type": "INSERT", "table": "", "schema": "public", "record": {}}, "table"),
        ({"type": "INSERT", "table": "positions", "record": {}}, "schema"),
        ({"type": "INSERT", "table": "positions", "schema": "public", "record": [1, 2]}, "record"),
        ({"type": "INSERT", "table": "positions", "schema": "public", "record": "{}"}, "record"),
    ],
)
def test_malformed_envelopes_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_payload(body)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("table", "row", "field"),
    [
        ("positions", {"status": "open"}, "record.id"),
        ("positions", {"id": None, "status": "open"}, "record.id"),
        ("positions", {"id": "not-a-uuid", "status": "open"}, "record.id"),
        ("positions", {"id": 7, "status": "open"}, "record.id"),
        ("signal_analyses", {"id": {"nested": 1}, "decision": "wait"}, "record.id"),
        ("signals", {"id": True}, "record.id"),
        ("signals", {"id": [str(ID)]}, "record.id"),
    ],
)
def test_a_bad_row_id_is_invalid_input_on_that_id(table: str, row: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        routed(envelope("INSERT", table, row))
    assert caught.value.field == field


# --- hypothesis: any envelope either routes or is InvalidInput -----------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.decimals(allow_nan=False, allow_infinity=False, places=8)  # json with parse_float=Decimal
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.uuids().map(str)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
rows = st.fixed_dictionaries(
    {},
    optional={
        "id": st.uuids().map(str) | st.uuids() | json_values,
        "decision": st.sampled_from(["wait", "enter_trade", "bad_setup"]) | json_values,
        "status": st.sampled_from(["open", "closed", "expired"]) | json_values,
        "quantity": st.decimals(allow_nan=False, allow_infinity=False, places=8),
    },
).flatmap(lambda base: st.dictionaries(st.text(max_size=6), json_values, max_size=3).map(lambda x: x | base))
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["INSERT", "UPDATE", "DELETE"]) | json_values,
        "table": st.sampled_from(["signal_analyses", "positions", "signals", "traders", ""]) | json_values,
        "record": st.none() | rows | json_values,
        "schema": st.sampled_from(["public", "auth", "storage"]) | json_values,
        "old_record": st.none() | rows | json_values,
    },
)


def _route_or_field(body: Any) -> Command | str:
    """The command, or the field an InvalidInput named (any other exception propagates)."""
    try:
        return routed(body)
    except InvalidInput as exc:
        return exc.field or ""


@settings(max_examples=200, deadline=None)
@given(body=envelopes | json_values)
def test_any_body_routes_or_raises_invalid_input_naming_a_field(body: Any) -> None:
    command = _route_or_field(body)
    if isinstance(command, str):
        assert command  # InvalidInput named a field
        return
    assert isinstance(command, Command)
    assert isinstance(body, dict)
    if body["schema"] != "public":
        assert command == Command(CommandKind.IGNORE, reason="other_schema")
    elif body["table"] not in ("signal_analyses", "positions", "signals"):
        assert command == Command(CommandKind.IGNORE, reason="other_table")
    if command.kind is not CommandKind.IGNORE:
        assert isinstance(command.entity_id, UUID)


@settings(max_examples=75, deadline=None)
@given(
    kind=st.sampled_from(["INSERT", "UPDATE", "DELETE"]),
    table=st.sampled_from(["signal_analyses", "positions", "signals"]),
    row=rows,
    entity=st.uuids(),
)
def test_well_formed_rows_with_a_uuid_id_always_route(
    kind: str, table: str, row: dict[str, Any], entity: UUID
) -> None:
    body = json.dumps(envelope(kind, table, row | {"id": str(entity)}), default=str)
    command = routed(load(body))
    if command.entity_id is not None:
        assert command.entity_id == entity
    if table == "positions":
        assert command.entity_id == entity
        if kind == "DELETE":
            assert command == Command(CommandKind.STOP_POSITION, entity, reason="position_deleted")


@settings(max_examples=100, deadline=None)
@given(
    quantity=st.decimals(min_value=0, max_value=10**9, places=8),
    zeros=st.integers(min_value=0, max_value=6),
)
def test_numbers_with_trailing_zeros_parse_as_decimals(quantity: Decimal, zeros: int) -> None:
    text = format(quantity, "f") + ("." if "." not in format(quantity, "f") and zeros else "") + "0" * zeros
    raw = (
        f'{{"type": "INSERT", "table": "positions", "record": {{"id": "{ID}", "status": "open", '
        f'"quantity": {text}}}, "schema": "public", "old_record": null}}'
    )
    payload = parse_payload(load(raw))
    assert payload.record is not None
    assert payload.record["quantity"] == quantity
    assert route(payload) == Command(CommandKind.REGISTER_POSITION, ID)


def test_the_envelope_model_accepts_the_python_field_name_too() -> None:
    payload = WebhookPayload.model_validate(
        {"type": "INSERT", "table": "signals", "schema_": "public", "record": {"id": str(ID)}}
    )
    assert payload.schema_ == "public"


def test_a_delete_reads_old_record_even_if_record_is_present() -> None:
    gone, other = uuid4(), uuid4()
    payload = parse_payload(
        {
            "type": "DELETE",
            "table": "positions",
            "schema": "public",
            "record": {"id": str(other), "status": "open"},
            "old_record": {"id": str(gone), "status": "open"},
        }
    )
    command = route(payload)
    assert (command.kind, command.entity_id) == (CommandKind.STOP_POSITION, gone)
