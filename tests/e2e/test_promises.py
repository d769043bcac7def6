"""Behaviours the README and the brief promise, each pinned through the real path.

Every test here was checked by breaking the one thing it pins (a SQL line, a Python
condition) and watching it fail: the SQL `adjust_tp` branch, the `auto_analyze_signals`
gate in the webhook path and in `signals_missing_initial_analysis`, and the trace
metadata the real workers send to llm-proxy (read back from what the stub received).
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from functions.core.contracts import format_time
from functions.handlers import api, reconciler
from functions.local.runner import LambdaContext
from functions.local.stub_llm import StubCall
from tests.support import factories as f
from tests.support.events import http_api_event, webhook_body
from tests.support.stack import WEBHOOK_SECRET, Stack, candle, running_stack

pytestmark = pytest.mark.usefixtures("moto_endpoint")


def post_webhook(body: str) -> dict[str, Any]:
    event = http_api_event(
        "POST", "/webhooks/supabase", body=body, headers={"authorization": f"Bearer {WEBHOOK_SECRET}"}
    )
    response = api.handler(event, LambdaContext("api"))
    assert response["statusCode"] == 200, response
    return dict(json.loads(response["body"]))


def signal_insert(signal: uuid.UUID, trader: uuid.UUID) -> str:
    record = {"id": str(signal), "trader_id": str(trader), "symbol": "BTCUSDT", "status": "new"}
    return webhook_body("signals", "INSERT", record)


def age(s: Stack, signal: uuid.UUID, minutes: int) -> None:
    s.db.fetch_one(
        "update public.signals set created_at = now() - make_interval(mins => %(m)s)"
        " where id = %(s)s returning id",
        {"s": signal, "m": minutes},
    )


def analyses(s: Stack, signal: uuid.UUID) -> list[dict[str, Any]]:
    return s.db.fetch_all(
        "select * from public.signal_analyses where signal_id = %(s)s order by created_at, id", {"s": signal}
    )


def register_position(s: Stack, **kw: Any) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    trader = f.trader(s.db, interval="1m")
    position = f.position(s.db, trader, **kw)
    out = post_webhook(webhook_body("positions", "INSERT", {"id": str(position), "status": "open"}))
    assert out["action"] == "registered"
    return trader, position, uuid.UUID(out["workflow_id"])


def only(calls: list[StubCall], path: str) -> StubCall:
    [call] = [c for c in calls if c.path == path]
    return call


# -- the SQL applies adjust_tp ------------------------------------------------------------


def test_adjust_tp_moves_the_take_profit_through_the_position_worker(db_url: str) -> None:
    with running_stack(db_url) as s:
        _, position, _ = register_position(s, entry="50000", stop_loss="49000", take_profit="52000")
        s.llm.queue_management(str(position), {"action": "adjust_tp", "params": {"take_profit": "53000"}})
        s.close_candle(candle(open_="50000", close="50100"))

        row = s.db.fetch_one("select * from public.positions where id = %(p)s", {"p": position})
        assert row is not None
        assert (row["take_profit"], row["stop_loss"], row["status"]) == (
            Decimal("53000"),
            Decimal("49000"),
            "open",
        )
        [decision] = s.db.fetch_all(
            "select * from public.management_decisions where position_id = %(p)s", {"p": position}
        )
        assert (decision["action"], decision["status"]) == ("adjust_tp", "applied")
        assert Decimal(str(decision["before_state"]["take_profit"])) == Decimal("52000")
        assert Decimal(str(decision["after_state"]["take_profit"])) == Decimal("53000")


# -- the auto_analyze_signals gate of the initial analysis ---------------------------------


def test_signals_insert_webhook_queues_the_initial_analysis_only_when_auto_analyze_is_on(
    db_url: str,
) -> None:
    with running_stack(db_url) as s:
        off = f.trader(s.db, interval="1m", auto_analyze=False)
        on = f.trader(s.db, interval="1m", auto_analyze=True)
        quiet, analysed = f.signal(s.db, off), f.signal(s.db, on)

        ignored = post_webhook(signal_insert(quiet, off))
        queued = post_webhook(signal_insert(analysed, on))
        assert (ignored["action"], ignored["reason"]) == ("ignored", "auto_analyze_off")
        assert queued == {"action": "queued", "signal_id": str(analysed), "table": "signals"}

        s.runner.run_until_idle()
        assert analyses(s, quiet) == []
        assert [a["analysis_type"] for a in analyses(s, analysed)] == ["initial"]
        assert s.llm.calls_for(quiet) == []
        assert len(s.llm.calls_for(analysed)) == 1


def test_reconciler_queues_lost_initial_analyses_only_for_traders_with_auto_analyze(db_url: str) -> None:
    with running_stack(db_url) as s:
        off = f.trader(s.db, interval="1m", auto_analyze=False)
        on = f.trader(s.db, interval="1m", auto_analyze=True)
        quiet, lost = f.signal(s.db, off), f.signal(s.db, on)
        for signal in (quiet, lost):
            age(s, signal, 2)  # both webhooks lost

        assert [row["signals_missing_initial_analysis"] for row in s.db.fetch_all(
            "select public.signals_missing_initial_analysis()"
        )] == [lost]  # fmt: skip
        out = reconciler.handler({}, LambdaContext("reconciler"))
        assert out["initial_queued"] == [str(lost)]
        s.runner.run_until_idle()
        assert analyses(s, quiet) == []
        assert [a["analysis_type"] for a in analyses(s, lost)] == ["initial"]


# -- the trace metadata the real workers send ----------------------------------------------


def test_initial_analysis_sends_its_trace_metadata_and_idempotency_key(db_url: str) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="1m", auto_analyze=True)
        signal = f.signal(s.db, trader)
        s.llm.queue_setup(str(signal), "bad_setup")
        post_webhook(signal_insert(signal, trader))
        s.runner.run_until_idle()

        call = only(s.llm.calls, "/analyze-signal")
        assert call.body["metadata"] == {
            "workflow_id": None,
            "workflow_type": None,
            "signal_id": str(signal),
            "position_id": None,
            "trader_id": str(trader),
            "candle_time": None,
            "analysis_type": "initial",
            "stage": "test",
        }
        assert call.body["analysis_type"] == "initial"
        assert call.body["signal"]["id"] == str(signal)
        assert call.idempotency_key == f"initial:{signal}"
        assert {k: v for k, v in call.headers.items() if k.startswith("x-cmon-")} == {
            "x-cmon-signal-id": str(signal),
            "x-cmon-trader-id": str(trader),
            "x-cmon-analysis-type": "initial",
            "x-cmon-stage": "test",
        }


def test_setup_worker_sends_workflow_signal_trader_candle_and_stage(db_url: str) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="1m")
        signal = f.signal(s.db, trader)
        registered = s.db.call(
            "register_setup_monitoring", analysis_id=f.analysis(s.db, signal), max_reanalyses=5
        )
        workflow = registered["workflow_id"]
        c = candle()
        s.close_candle(c)

        call = only(s.llm.calls, "/analyze-signal")
        close = format_time(c.close_time)
        assert call.body["metadata"] == {
            "workflow_id": workflow,
            "workflow_type": "setup_monitoring",
            "signal_id": str(signal),
            "position_id": None,
            "trader_id": str(trader),
            "candle_time": close,
            "analysis_type": "monitoring",
            "stage": "test",
        }
        assert call.body["candle"]["close_time"] == close
        assert call.idempotency_key == f"{workflow}:{close}"
        assert {k: v for k, v in call.headers.items() if k.startswith("x-cmon-")} == {
            "x-cmon-workflow-id": workflow,
            "x-cmon-workflow-type": "setup_monitoring",
            "x-cmon-signal-id": str(signal),
            "x-cmon-trader-id": str(trader),
            "x-cmon-candle-time": close,
            "x-cmon-analysis-type": "monitoring",
            "x-cmon-stage": "test",
        }


def test_position_worker_sends_workflow_position_trader_candle_and_stage(db_url: str) -> None:
    with running_stack(db_url) as s:
        trader, position, workflow = register_position(s)
        c = candle()
        s.close_candle(c)

        call = only(s.llm.calls, "/manage-position")
        close = format_time(c.close_time)
        assert call.body["metadata"] == {
            "workflow_id": str(workflow),
            "workflow_type": "position_management",
            "signal_id": None,
            "position_id": str(position),
            "trader_id": str(trader),
            "candle_time": close,
            "analysis_type": "position_management",
            "stage": "test",
        }
        assert call.body["position"]["id"] == str(position)
        assert call.idempotency_key == f"{workflow}:{close}"
        assert {k: v for k, v in call.headers.items() if k.startswith("x-cmon-")} == {
            "x-cmon-workflow-id": str(workflow),
            "x-cmon-workflow-type": "position_management",
            "x-cmon-position-id": str(position),
            "x-cmon-trader-id": str(trader),
            "x-cmon-candle-time": close,
            "x-cmon-analysis-type": "position_management",
            "x-cmon-stage": "test",
        }
