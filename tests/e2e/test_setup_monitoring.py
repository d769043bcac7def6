"""Setup monitoring end to end: webhook → API Lambda (Mangum) → SQS → worker → llm-proxy
(stub over HTTP) → Postgres; candles → EventBridge (moto) → fan-out → SQS → worker.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from functions.handlers import api
from functions.local.runner import LambdaContext
from tests.support import factories as f
from tests.support.events import http_api_event, webhook_body
from tests.support.stack import WEBHOOK_SECRET, Stack, candle, next_candle, running_stack

pytestmark = pytest.mark.usefixtures("moto_endpoint")

PLAN = {"side": "long", "entry": "50010", "stop_loss": "49500", "take_profit": "51000"}


def post_webhook(body: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"x-supabase-webhook-source": WEBHOOK_SECRET} if headers is None else headers
    event = http_api_event("POST", "/webhooks/supabase", body=body, headers=headers)
    response = api.handler(event, LambdaContext("api"))
    return response["statusCode"], json.loads(response["body"])


def analyses(s: Stack, signal: uuid.UUID) -> list[dict[str, Any]]:
    return s.db.fetch_all(
        "select * from public.signal_analyses where signal_id = %(s)s order by created_at, id", {"s": signal}
    )


def signal_status(s: Stack, signal: uuid.UUID) -> str:
    row = s.db.fetch_one("select status from public.signals where id = %(s)s", {"s": signal})
    assert row is not None
    return str(row["status"])


def start_with_initial_wait(s: Stack) -> tuple[uuid.UUID, uuid.UUID]:
    """The brief's steps 1-4: trader with auto-analysis, a signal, its initial analysis says wait."""
    trader = f.trader(s.db, interval="1m", auto_analyze=True)
    signal = f.signal(s.db, trader)
    s.llm.queue_setup(str(signal), "wait")
    status, body = post_webhook(
        webhook_body(
            "signals",
            "INSERT",
            {"id": str(signal), "trader_id": str(trader), "symbol": "BTCUSDT", "status": "new"},
        )
    )
    assert (status, body["action"]) == (200, "queued")
    s.runner.run_until_idle()
    first = analyses(s, signal)
    assert [(a["analysis_type"], a["decision"], a["candle_time"]) for a in first] == [
        ("initial", "wait", None)
    ]
    # Supabase then sends the analysis row's own webhook: it finds the workflow registered.
    status, body = post_webhook(
        webhook_body(
            "signal_analyses",
            "INSERT",
            {"id": str(first[0]["id"]), "signal_id": str(signal), "decision": "wait", "confidence": 0.6200},
        )
    )
    assert (status, body["action"]) == (200, "already_registered")
    return signal, uuid.UUID(body["workflow_id"])


def test_wait_is_reanalysed_each_close_until_enter_trade_then_stops(db_url: str) -> None:
    with running_stack(db_url) as s:
        signal, workflow = start_with_initial_wait(s)

        c1 = candle()
        s.llm.queue_setup(str(signal), "wait")
        s.close_candle(c1)
        rows = analyses(s, signal)
        assert len(rows) == 2
        assert (rows[1]["analysis_type"], rows[1]["candle_time"]) == ("monitoring", c1.close_time)

        c2 = next_candle(c1)
        s.llm.queue_setup(str(signal), {"decision": "enter_trade", "trade_plan": PLAN})
        s.close_candle(c2)
        assert [a["decision"] for a in analyses(s, signal)] == ["wait", "wait", "enter_trade"]
        assert signal_status(s, signal) == "entered"

        c3 = next_candle(c2)
        s.close_candle(c3)
        s.close_candle(next_candle(c3))
        assert len(analyses(s, signal)) == 3  # no 4th analysis: monitoring stopped
        assert f.workflow(s.db, workflow)["stopped_reason"] == "entered"
        setup_calls = [c for c in s.llm.calls if c.path == "/analyze-signal"]
        assert len(setup_calls) == 3


def test_max_reanalyses_gives_four_analyses_then_expires_the_signal(db_url: str) -> None:
    with running_stack(db_url, max_reanalyses=3) as s:
        signal, workflow = start_with_initial_wait(s)
        c = candle()
        for _ in range(5):
            s.llm.queue_setup(str(signal), "wait")
            s.close_candle(c)
            c = next_candle(c)
        rows = analyses(s, signal)
        assert len(rows) == 4  # 1 initial + 3 re-analyses, none after
        assert all(a["decision"] == "wait" for a in rows)
        assert signal_status(s, signal) == "expired"
        assert f.workflow(s.db, workflow)["stopped_reason"] == "max_reanalyses"


def test_the_same_candle_delivered_three_times_is_analysed_once(db_url: str) -> None:
    with running_stack(db_url) as s:
        signal, _ = start_with_initial_wait(s)
        c = candle()
        for _ in range(3):
            s.publish(c)
        s.runner.run_until_idle()
        assert len(analyses(s, signal)) == 2
        assert len([c for c in s.llm.calls if c.path == "/analyze-signal"]) == 2


def test_llm_proxy_failing_five_times_disables_the_workflow_and_notifies(db_url: str) -> None:
    with running_stack(db_url) as s:
        signal, workflow = start_with_initial_wait(s)
        s.llm.fail(str(signal), times=100, status=500)
        c = candle()
        for _ in range(7):
            s.close_candle(c)
            c = next_candle(c)
        row = f.workflow(s.db, workflow)
        assert (row["consecutive_errors"], row["is_active"], row["stopped_reason"]) == (
            5,
            False,
            "auto_disabled",
        )
        notes = s.db.fetch_all(
            "select kind from public.notifications where workflow_id = %(w)s", {"w": workflow}
        )
        assert [n["kind"] for n in notes] == ["workflow_disabled"]
        # After the 5th failure no further job is even enqueued for it.
        monitoring_calls = [
            c for c in s.llm.calls_for(str(signal)) if c.body["analysis_type"] == "monitoring"
        ]
        assert len(monitoring_calls) == 5
        assert s.metrics.counts["WorkflowsAutoDisabled"] == 1
        assert s.queue_depth(s.aws.setup_dlq_url) == 0


def test_webhook_with_a_wrong_or_missing_secret_is_401_and_writes_nothing(db_url: str) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db)
        signal = f.signal(s.db, trader)
        analysis = f.analysis(s.db, signal, "wait")
        body = webhook_body(
            "signal_analyses", "INSERT", {"id": str(analysis), "signal_id": str(signal), "decision": "wait"}
        )
        for headers in (
            {},
            {"x-supabase-webhook-source": "nope"},
            {"authorization": "Bearer nope"},
            {"authorization": WEBHOOK_SECRET},
        ):
            status, _ = post_webhook(body, headers)
            assert status == 401
        assert s.db.fetch_all("select id from public.workflow_schedules") == []
        status, result = post_webhook(body, {"authorization": f"Bearer {WEBHOOK_SECRET}"})
        assert (status, result["action"]) == (200, "registered")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not json", "body"),
        (
            json.dumps(
                {
                    "type": "INSERT",
                    "table": "signal_analyses",
                    "schema": "public",
                    "record": None,
                    "old_record": None,
                }
            ),
            "record",
        ),
        (
            json.dumps(
                {"type": "UPSERT", "table": "signals", "schema": "public", "record": {}, "old_record": None}
            ),
            "type",
        ),
        (webhook_body("signal_analyses", "INSERT", {"id": "not-a-uuid", "decision": "wait"}), "record.id"),
        (webhook_body("positions", "INSERT", {"status": "open"}), "record.id"),
    ],
)
def test_malformed_webhook_is_422_naming_the_field_and_writes_nothing(
    db_url: str, body: str, field: str
) -> None:
    with running_stack(db_url) as s:
        status, result = post_webhook(body)
        assert status == 422
        assert result["field"].startswith(field)
        assert s.db.fetch_all("select id from public.workflow_schedules") == []


def test_the_same_webhook_twice_gives_one_workflow(db_url: str) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db)
        signal = f.signal(s.db, trader)
        analysis = f.analysis(s.db, signal, "wait")
        body = webhook_body(
            "signal_analyses",
            "INSERT",
            {"id": str(analysis), "signal_id": str(signal), "decision": "wait", "confidence": 0.6200},
        )
        first, second = post_webhook(body), post_webhook(body)
        assert (first[1]["action"], second[1]["action"]) == ("registered", "already_registered")
        assert first[1]["workflow_id"] == second[1]["workflow_id"]
        assert len(s.db.fetch_all("select id from public.workflow_schedules")) == 1


def test_recorded_pg_net_bodies_are_accepted_or_refused_cleanly(db_url: str) -> None:
    """The verbatim recordings use illustrative tables: the API must never 500 on them."""
    from tests.support.events import EVENTS

    with running_stack(db_url):
        for path in sorted((EVENTS / "supabase").glob("webhook_*.body.json")):
            status, result = post_webhook(path.read_text())
            assert status in (200, 422), (path.name, status, result)
        captured = json.loads((EVENTS / "supabase/pg_net_captured_requests.json").read_text())["requests"]
        for request in captured:
            headers = dict(request["headers"])
            status, _ = post_webhook(request["body_raw"], headers)
            has_secret = "Authorization" in headers or "x-supabase-webhook-source" in headers
            assert status in ((200, 422) if has_secret else (401,)), request["request_line"]


def test_reconciler_queues_the_initial_analysis_of_a_signal_whose_webhook_was_lost(db_url: str) -> None:
    from functions.handlers import reconciler

    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="1m", auto_analyze=True)
        lost = f.signal(s.db, trader)  # its INSERT webhook never arrived
        fresh = f.signal(s.db, trader)  # its webhook may still be on the way: left alone
        s.db.fetch_one(
            "update public.signals set created_at = now() - interval '2 minutes'"
            " where id = %(s)s returning id",
            {"s": lost},
        )
        s.llm.queue_setup(str(lost), "wait")

        out = reconciler.handler({}, LambdaContext("reconciler"))
        assert out["initial_queued"] == [str(lost)]
        s.runner.run_until_idle()
        assert [(a["analysis_type"], a["decision"]) for a in analyses(s, lost)] == [("initial", "wait")]
        assert analyses(s, fresh) == []
        # Claimed now: the next run does not queue it again.
        assert reconciler.handler({}, LambdaContext("reconciler"))["initial_queued"] == []
