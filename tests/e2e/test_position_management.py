"""Position management end to end (the brief's test 2.2), guardrails on real rows, the
reconciler for lost webhooks, and the whole chain wait → enter_trade → managed."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from functions.handlers import api, reconciler
from functions.local.runner import LambdaContext
from tests.support import factories as f
from tests.support.events import http_api_event, webhook_body
from tests.support.stack import WEBHOOK_SECRET, Stack, candle, next_candle, running_stack

pytestmark = pytest.mark.usefixtures("moto_endpoint")


def post_webhook(body: str) -> dict[str, Any]:
    event = http_api_event(
        "POST", "/webhooks/supabase", body=body, headers={"authorization": f"Bearer {WEBHOOK_SECRET}"}
    )
    response = api.handler(event, LambdaContext("api"))
    assert response["statusCode"] == 200, response
    return dict(json.loads(response["body"]))


def decisions(s: Stack, position: uuid.UUID) -> list[dict[str, Any]]:
    return s.db.fetch_all(
        "select * from public.management_decisions where position_id = %(p)s order by candle_time",
        {"p": position},
    )


def position_row(s: Stack, position: uuid.UUID) -> dict[str, Any]:
    row = s.db.fetch_one("select * from public.positions where id = %(p)s", {"p": position})
    assert row is not None
    return row


def open_position(s: Stack, **kw: Any) -> tuple[uuid.UUID, uuid.UUID]:
    trader = f.trader(s.db, interval="1m")
    position = f.position(s.db, trader, **kw)
    out = post_webhook(
        webhook_body(
            "positions",
            "INSERT",
            {
                "id": str(position),
                "status": "open",
                "symbol": "BTCUSDT",
                "side": kw.get("side", "long"),
                "entry_price": 50000.00,
                "contracts": 1.0,
            },
        )
    )
    assert out["action"] == "registered"
    return position, uuid.UUID(out["workflow_id"])


def test_brief_2_2_hold_then_adjust_sl_then_closed_by_user_stops(db_url: str) -> None:
    with running_stack(db_url) as s:
        position, workflow = open_position(s, entry="50000", stop_loss="49000")
        c1 = candle(open_="50000", close="50100")
        s.llm.queue_management(str(position), "hold")
        s.close_candle(c1)
        assert [d["action"] for d in decisions(s, position)] == ["hold"]

        c2 = next_candle(c1, open_="50100", close="50200")
        s.llm.queue_management(str(position), {"action": "adjust_sl", "params": {"stop_loss": "49500"}})
        s.close_candle(c2)
        assert position_row(s, position)["stop_loss"] == Decimal("49500")

        # The user closes the position; Supabase sends the UPDATE webhook.
        s.db.fetch_one(
            "update public.positions set status = 'closed', closed_at = now(), exit_price = 50200"
            " where id = %(p)s returning id",
            {"p": position},
        )
        stopped = post_webhook(
            webhook_body(
                "positions",
                "UPDATE",
                {"id": str(position), "status": "closed"},
                {"id": str(position), "status": "open"},
            )
        )
        assert stopped["action"] == "stopped"
        s.close_candle(next_candle(c2))
        assert len(decisions(s, position)) == 2
        assert f.workflow(s.db, workflow)["stopped_reason"] == "position_closed"


def test_wait_then_enter_trade_opens_a_position_managed_at_the_next_close(db_url: str) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="1m")
        signal = f.signal(s.db, trader)
        analysis = f.analysis(s.db, signal, "wait")
        post_webhook(
            webhook_body(
                "signal_analyses",
                "INSERT",
                {"id": str(analysis), "signal_id": str(signal), "decision": "wait"},
            )
        )
        plan = {"side": "long", "entry": "50010", "stop_loss": "49600", "take_profit": "51000"}
        s.llm.queue_setup(str(signal), {"decision": "enter_trade", "trade_plan": plan})
        c1 = candle(close="50010")
        s.close_candle(c1)
        row = s.db.fetch_one("select id from public.positions where signal_id = %(s)s", {"s": signal})
        assert row is not None
        position = row["id"]
        # Its INSERT webhook arrives: the workflow was registered in the same transaction.
        again = post_webhook(webhook_body("positions", "INSERT", {"id": str(position), "status": "open"}))
        assert again["action"] == "already_registered"

        s.llm.queue_management(str(position), "hold")
        s.close_candle(next_candle(c1, open_="50010", close="50050"))
        assert [d["action"] for d in decisions(s, position)] == ["hold"]
        call = next(c for c in s.llm.calls if c.path == "/manage-position")
        assert call.body["position"]["id"] == str(position)
        assert call.headers["idempotency-key"].startswith(again["workflow_id"])


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"action": "adjust_sl", "params": {"stop_loss": "48000"}}, "stop_loss_loosened"),
        ({"action": "adjust_sl", "params": {"stop_loss": "50500"}}, "stop_loss_on_wrong_side_of_price"),
        ({"action": "adjust_tp", "params": {"take_profit": "49000"}}, "take_profit_on_wrong_side_of_price"),
        ({"action": "reduce", "params": {"fraction": 1.5}}, "reduce_fraction_out_of_range"),
        ({"action": "reduce", "params": {"fraction": "abc"}}, "reduce_fraction_out_of_range"),
        ({"action": "double_down", "params": {}}, "unknown_action"),
        ({"action": "adjust_sl", "params": {"stop_loss": "NaN"}}, "invalid_stop_loss"),
    ],
)
def test_guardrails_reject_and_record_leaving_the_position_untouched(
    db_url: str, answer: dict[str, Any], reason: str
) -> None:
    with running_stack(db_url) as s:
        position, _ = open_position(s, entry="50000", stop_loss="49000", take_profit="52000")
        before = position_row(s, position)
        s.llm.queue_management(str(position), answer)
        s.close_candle(candle(open_="50000", close="50000"))
        [decision] = decisions(s, position)
        assert (decision["status"], decision["rejection_reason"], decision["action"]) == (
            "rejected",
            reason,
            answer["action"],
        )
        after = position_row(s, position)
        for column in ("stop_loss", "take_profit", "contracts", "status", "version"):
            assert after[column] == before[column]
        assert s.metrics.counts["GuardrailRejections"] == 1


def test_reduce_then_close_realise_pnl(db_url: str) -> None:
    with running_stack(db_url) as s:
        position, workflow = open_position(s, entry="50000", contracts="2")
        c1 = candle(open_="50000", close="51000")
        s.llm.queue_management(str(position), {"action": "reduce", "params": {"fraction": "0.5"}})
        s.close_candle(c1)
        s.llm.queue_management(str(position), "close")
        s.close_candle(next_candle(c1, open_="51000", close="50500"))
        row = position_row(s, position)
        assert (row["status"], row["contracts"], row["realized_pnl"], row["exit_price"]) == (
            "closed",
            Decimal("1.0"),
            Decimal("1500.0"),
            Decimal("50500"),
        )
        assert f.workflow(s.db, workflow)["stopped_reason"] == "position_closed"


def test_paper_execution_closes_at_the_stop_before_asking_the_llm(db_url: str) -> None:
    with running_stack(db_url, paper_execution=True) as s:
        position, _ = open_position(s, entry="50000", stop_loss="49500")
        s.close_candle(candle(open_="50000", close="49800", low="49400", high="50050"))
        row = position_row(s, position)
        assert (row["status"], row["exit_price"], row["close_reason"]) == (
            "closed",
            Decimal("49500"),
            "stop_loss",
        )
        assert [c for c in s.llm.calls if c.path == "/manage-position"] == []
        [decision] = decisions(s, position)
        assert (decision["source"], decision["action"]) == ("paper", "close")


def test_reconciler_registers_a_position_whose_webhook_was_lost_and_stops_a_closed_one(db_url: str) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="1m")
        lost = f.position(s.db, trader)  # inserted, webhook never delivered
        closed, closed_wf = open_position(s)
        s.db.fetch_one(
            "update public.positions set status = 'closed', closed_at = now() where id = %(p)s returning id",
            {"p": closed},
        )  # its UPDATE webhook is lost too

        out = reconciler.handler(
            {"source": "aws.events", "detail-type": "Scheduled Event"}, LambdaContext("reconciler")
        )
        assert len(out["registered_positions"]) == 1
        assert out["stopped"] == [str(closed_wf)]
        assert f.workflow(s.db, closed_wf)["stopped_reason"] == "position_closed"
        s.llm.queue_management(str(lost), "hold")
        s.close_candle(candle())
        assert [d["action"] for d in decisions(s, lost)] == ["hold"]
        assert decisions(s, closed) == []
        assert s.metrics.counts["ReconcilerFixes"] == 2


def test_the_same_candle_twice_gives_one_decision(db_url: str) -> None:
    with running_stack(db_url) as s:
        position, _ = open_position(s)
        c = candle()
        s.close_candle(c)
        s.close_candle(c)
        assert len(decisions(s, position)) == 1
        assert len([c for c in s.llm.calls if c.path == "/manage-position"]) == 1


def test_position_delete_webhook_stops_management(db_url: str) -> None:
    with running_stack(db_url) as s:
        position, workflow = open_position(s)
        out = post_webhook(webhook_body("positions", "DELETE", None, {"id": str(position), "status": "open"}))
        assert out["action"] == "stopped"
        assert f.workflow(s.db, workflow)["stopped_reason"] == "position_deleted"
