"""Tracing: spans for claim, llm-proxy call and record, and our trace header sent on.

Outside Lambda the Tracer is disabled (no daemon), which the first test pins. The others
turn the X-Ray SDK on in-process with a segment of their own (as the Lambda runtime's
facade segment would be) and read the subsegments back; nothing is sent anywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core import xray_recorder

from functions.adapters import tracing
from functions.adapters.postgres import Database
from functions.adapters.repository import PostgresRepository
from tests.support import factories as f
from tests.unit.test_llm_proxy_client import SETUP_ANSWER, Script, make_client, ok, setup_request


@pytest.fixture
def segment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    tracer = tracing.service_tracer()
    monkeypatch.setattr(tracer, "disabled", False)
    global_sdk_config.set_sdk_enabled(True)
    seg = xray_recorder.begin_segment("cmon-test")
    try:
        yield seg
    finally:
        xray_recorder.clear_trace_entities()
        global_sdk_config.set_sdk_enabled(False)


def test_outside_lambda_the_tracer_is_off_and_the_runtime_header_is_passed_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert tracing.service_tracer().disabled
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-00000000-000000000000000000000001;Sampled=1")
    script = Script(ok(SETUP_ANSWER))
    client, _ = make_client(script)
    with tracing.span("claim"):  # a no-op, not an error, without a daemon
        client.analyze_signal(setup_request(), idempotency_key="wf:candle")
    (sent,) = script.requests
    assert sent.headers["x-amzn-trace-id"] == "Root=1-00000000-000000000000000000000001;Sampled=1"


def test_the_llm_proxy_call_is_a_span_and_its_id_is_the_parent_sent_to_llm_proxy(segment: Any) -> None:
    script = Script(ok(SETUP_ANSWER))
    client, _ = make_client(script)
    request = setup_request()
    client.analyze_signal(request, idempotency_key="wf:candle")

    (sub,) = segment.subsegments
    assert sub.name == "## llm-proxy"
    assert sub.annotations == {"path": "analyze-signal", "workflow_id": str(request.metadata.workflow_id)}
    (sent,) = script.requests
    assert sent.headers["x-amzn-trace-id"] == f"Root={segment.trace_id};Parent={sub.id};Sampled=1"


def test_claim_and_record_are_spans(db: Database, segment: Any) -> None:
    signal = f.signal(db, f.trader(db))  # untraced helpers: no subsegment
    repo = PostgresRepository(db)
    assert repo.claim_candle(uuid.uuid4(), datetime(2026, 1, 1, tzinfo=UTC), 60).reason == "not_found"
    repo.record_initial_failure(signal, "llm_unavailable", "down")
    assert [s.name for s in segment.subsegments] == ["## claim", "## record"]
