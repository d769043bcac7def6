"""The API's OpenAPI tells the truth: the webhook schema admits exactly what the core accepts.

schemathesis (tests/support/api_fuzz.py) checks the running API against its schema; this
pins the one part written by hand, the webhook body's rules, against the parser itself,
for every recorded Supabase payload and for generated envelopes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from functions.core.errors import InvalidInput
from functions.core.webhooks import parse_payload, route
from functions.handlers.api import create_app
from tests.support.events import EVENTS


def _webhook_validator() -> Draft202012Validator:
    spec = create_app().openapi()
    body = spec["paths"]["/webhooks/supabase"]["post"]["requestBody"]["content"]["application/json"]
    return Draft202012Validator(body["schema"], format_checker=FormatChecker())


VALIDATOR = _webhook_validator()


def core_accepts(body: Any) -> bool:
    try:
        route(parse_payload(body))
    except InvalidInput:
        return False
    return True


def recorded_bodies() -> list[Any]:
    folder = EVENTS / "supabase"
    bodies = [json.loads(p.read_text()) for p in sorted(folder.glob("webhook_*.body.json"))]
    captured = json.loads((folder / "pg_net_captured_requests.json").read_text())["requests"]
    bodies += [json.loads(r["body_raw"]) for r in captured]
    for line in (folder / "pg_net_captured_tz_and_noop_update.jsonl").read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            raw = entry.get("body_raw", entry)
            bodies.append(json.loads(raw) if isinstance(raw, str) else raw)
    return bodies


@pytest.mark.parametrize("body", recorded_bodies())
def test_every_recorded_payload_is_judged_alike_by_the_schema_and_the_parser(body: Any) -> None:
    assert VALIDATOR.is_valid(body) == core_accepts(body)


def test_the_recorded_signal_analyses_insert_is_valid_by_the_schema() -> None:
    body = json.loads((EVENTS / "supabase/webhook_insert_signal_analyses.body.json").read_text())
    assert VALIDATOR.is_valid(body)
    assert not VALIDATOR.is_valid({**body, "record": {**body["record"], "id": "not-a-uuid"}})


ROWS = st.one_of(
    st.none(),
    st.just({}),
    st.builds(lambda u: {"id": str(u), "status": "open", "decision": "wait"}, st.uuids()),
    st.builds(lambda u: {"id": str(u), "status": "closed", "decision": "enter_trade"}, st.uuids()),
    st.just({"id": "not-a-uuid"}),
    st.just({"id": 2}),
    st.just([1]),
)
ENVELOPES = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["INSERT", "UPDATE", "DELETE", "UPSERT"]),
        "table": st.sampled_from(["signal_analyses", "signals", "positions", "traders", ""]),
        "schema": st.sampled_from(["public", "auth", ""]),
        "record": ROWS,
        "old_record": ROWS,
    }
)


@given(ENVELOPES)
def test_a_generated_envelope_is_valid_by_the_schema_exactly_when_the_parser_accepts_it(
    body: dict[str, Any],
) -> None:
    assert VALIDATOR.is_valid(body) == core_accepts(body)


def test_every_route_documents_its_errors_and_answers_with_a_model() -> None:
    spec = create_app().openapi()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ok = op["responses"]["200"]["content"]["application/json"]["schema"]
            assert ok, (method, path)
            if path == "/health":
                continue
            assert {"401", "422"} <= set(op["responses"]), (method, path)
            assert op.get("security"), (method, path)
    stop = spec["paths"]["/workflows/{workflow_id}/stop"]["post"]
    assert "404" in stop["responses"]
    reason = next(p for p in stop["parameters"] if p["name"] == "reason")["schema"]
    assert reason["maxLength"] == 200 and "\\x00" in reason["pattern"]
