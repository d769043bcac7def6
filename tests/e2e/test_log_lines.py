"""The brief's five log lines, read back as the JSON the Lambdas print.

The brief (seed 002, "Ensure logs capture"):
  Workflow started: signal_id, symbol, interval
  Candle closed: symbol-interval, monitors_count
  Analysis complete: signal_id, decision, confidence, tokens
  Workflow stopped: signal_id, reason
  Error: signal_id, error_message, consecutive_errors

Each path (initial analysis, monitoring, management, webhook, reconciler) is driven
through the real handlers; the records are formatted by the handlers' Powertools
Logger (its own formatter, on a second stream) and parsed as JSON.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from functions.core.logs import OUR_LOGGERS, set_level
from functions.handlers import api, reconciler
from functions.handlers import setup_analysis as _setup_analysis  # noqa: F401  (configures the Logger)
from functions.local.runner import LambdaContext
from tests.support import factories as f
from tests.support.events import http_api_event, webhook_body
from tests.support.stack import WEBHOOK_SECRET, Stack, candle, next_candle, running_stack

pytestmark = pytest.mark.usefixtures("moto_endpoint")

PLAN = {"side": "long", "entry": "50010", "stop_loss": "49500", "take_profit": "51000"}


class JsonLogs:
    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._stream.getvalue().splitlines() if line.strip()]

    def lines(self, message: str, **match: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records()
            if r.get("message") == message and all(r.get(k) == v for k, v in match.items())
        ]

    def one(self, message: str, **match: Any) -> dict[str, Any]:
        found = self.lines(message, **match)
        assert len(found) == 1, (message, match, [r.get("message") for r in self.records()])
        return found[0]


@pytest.fixture
def logs() -> Iterator[JsonLogs]:
    """A second handler on the services' `cmon` logger with the Powertools formatter."""
    root = logging.getLogger("cmon")
    # The JSON handler functions.core.logs.service_logger attached (Powertools' formatter).
    [powertools] = [h for h in root.handlers if getattr(h, "_cmon_json", False)]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(powertools.formatter)
    root.addHandler(handler)
    # The brief's lines are INFO; an earlier test in this process (a `cmon` command) may
    # have set our loggers' level higher.
    levels = {name: logging.getLogger(name).level for name in OUR_LOGGERS}
    set_level(logging.INFO)
    try:
        yield JsonLogs(stream)
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def post_webhook(body: str) -> dict[str, Any]:
    event = http_api_event(
        "POST", "/webhooks/supabase", body=body, headers={"authorization": f"Bearer {WEBHOOK_SECRET}"}
    )
    response = api.handler(event, LambdaContext("api"))
    assert response["statusCode"] == 200, response
    return dict(json.loads(response["body"]))


def queue_initial(s: Stack, trader: uuid.UUID, signal: uuid.UUID) -> None:
    record = {"id": str(signal), "trader_id": str(trader), "symbol": "BTCUSDT", "status": "new"}
    assert post_webhook(webhook_body("signals", "INSERT", record))["action"] == "queued"
    s.runner.run_until_idle()


def test_initial_then_monitoring_then_management_log_every_field(db_url: str, logs: JsonLogs) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="1m", auto_analyze=True)
        signal = f.signal(s.db, trader, symbol="BTCUSDT")
        sid = str(signal)

        # initial analysis: wait → monitoring starts
        s.llm.queue_setup(sid, {"decision": "wait", "confidence": 0.61})
        queue_initial(s, trader, signal)
        initial = logs.one("Analysis complete", signal_id=sid, analysis_type="initial")
        assert (initial["decision"], initial["confidence"], initial["tokens"]) == ("wait", 0.61, 1100)
        started = logs.one("Workflow started", signal_id=sid, via="analysis")
        assert (started["symbol"], started["interval"]) == ("BTCUSDT", "1m")
        workflow = started["workflow_id"]

        # monitoring: a close, a wait, then enter_trade
        c1 = candle()
        s.llm.queue_setup(sid, {"decision": "wait", "confidence": 0.55})
        s.close_candle(c1)
        closed = logs.one("Candle closed", close_time=c1.close_time.isoformat())
        assert (closed["symbol"], closed["interval"], closed["stream"], closed["monitors_count"]) == (
            "BTCUSDT",
            "1m",
            "BTCUSDT-1m",
            1,
        )
        again = logs.one("Analysis complete", signal_id=sid, analysis_type="monitoring")
        assert (again["workflow_id"], again["decision"], again["confidence"], again["tokens"]) == (
            workflow,
            "wait",
            0.55,
            1100,
        )
        s.llm.queue_setup(sid, {"decision": "enter_trade", "confidence": 0.8, "trade_plan": PLAN})
        s.close_candle(next_candle(c1))
        stopped = logs.one("Workflow stopped", workflow_id=workflow)
        assert (stopped["signal_id"], stopped["reason"]) == (sid, "entered")
        [position_started] = [r for r in logs.lines("Workflow started", signal_id=sid) if "position_id" in r]
        assert position_started["workflow_id"] != workflow
        assert (position_started["symbol"], position_started["interval"], position_started["via"]) == (
            "BTCUSDT",
            "1m",
            "analysis",
        )
        position = position_started["position_id"]

        # management: hold, then close
        c3 = next_candle(next_candle(c1))
        s.llm.queue_management(position, {"action": "hold", "confidence": 0.7}, {"action": "close"})
        s.close_candle(c3)
        managed = logs.one("Analysis complete", position_id=position)
        assert (managed["signal_id"], managed["decision"], managed["confidence"], managed["tokens"]) == (
            sid,
            "hold",
            0.7,
            1100,
        )
        assert (managed["symbol"], managed["interval"]) == ("BTCUSDT", "1m")
        s.close_candle(next_candle(c3))
        done = logs.one("Workflow stopped", workflow_id=position_started["workflow_id"])
        assert (done["signal_id"], done["position_id"], done["reason"]) == (sid, position, "position_closed")


def test_errors_name_the_signal_and_count_consecutive_errors(db_url: str, logs: JsonLogs) -> None:
    with running_stack(db_url, max_consecutive_errors=2) as s:
        trader = f.trader(s.db, interval="1m", auto_analyze=True)
        failing_initial = f.signal(s.db, trader)
        s.llm.fail(str(failing_initial), times=1, status=500)
        queue_initial(s, trader, failing_initial)
        error = logs.one("Error", signal_id=str(failing_initial))
        assert error["consecutive_errors"] == 1
        assert "500" in error["error_message"]

        signal = f.signal(s.db, trader)
        registered = s.db.call(
            "register_setup_monitoring", analysis_id=f.analysis(s.db, signal), max_reanalyses=5
        )
        s.llm.fail(str(signal), times=10, status=500)
        c = candle()
        s.close_candle(c)
        s.close_candle(next_candle(c))
        errors = logs.lines("Error", signal_id=str(signal))
        assert [(e["workflow_id"], e["consecutive_errors"]) for e in errors] == [
            (registered["workflow_id"], 1),
            (registered["workflow_id"], 2),
        ]
        assert all(e["error_message"] and e["symbol"] == "BTCUSDT" for e in errors)
        disabled = logs.one("Workflow stopped", signal_id=str(signal))
        assert (disabled["reason"], disabled["consecutive_errors"]) == ("auto_disabled", 2)


def test_management_errors_name_the_position_and_its_signal(db_url: str, logs: JsonLogs) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="1m")
        signal = f.signal(s.db, trader, status="entered")
        position = f.position(s.db, trader, signal_id=signal)
        wf = s.db.call("register_position_management", position_id=position, check_gate=True)["workflow_id"]
        s.llm.fail(str(position), times=1, status=503)
        s.close_candle(candle())
        error = logs.one("Error", workflow_id=wf)
        assert (error["signal_id"], error["position_id"], error["consecutive_errors"]) == (
            str(signal),
            str(position),
            1,
        )
        assert "503" in error["error_message"]


def test_webhook_starts_and_stops_log_signal_symbol_interval_and_reason(db_url: str, logs: JsonLogs) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="5m")
        signal = f.signal(s.db, trader, symbol="ETHUSDT")
        analysis = f.analysis(s.db, signal, "wait")
        out = post_webhook(
            webhook_body(
                "signal_analyses",
                "INSERT",
                {"id": str(analysis), "signal_id": str(signal), "decision": "wait"},
            )
        )
        started = logs.one("Workflow started", workflow_id=out["workflow_id"])
        assert (started["signal_id"], started["symbol"], started["interval"], started["via"]) == (
            str(signal),
            "ETHUSDT",
            "5m",
            "webhook",
        )

        position = f.position(s.db, trader, symbol="ETHUSDT", signal_id=signal)
        registered = post_webhook(
            webhook_body("positions", "INSERT", {"id": str(position), "status": "open"})
        )
        s.db.fetch_one(
            "update public.positions set status = 'closed' where id = %(p)s returning id", {"p": position}
        )
        post_webhook(
            webhook_body(
                "positions",
                "UPDATE",
                {"id": str(position), "status": "closed"},
                {"id": str(position), "status": "open"},
            )
        )
        stopped = logs.one("Workflow stopped", workflow_id=registered["workflow_id"])
        assert (stopped["signal_id"], stopped["position_id"], stopped["reason"], stopped["via"]) == (
            str(signal),
            str(position),
            "position_closed",
            "webhook",
        )
        assert (stopped["symbol"], stopped["interval"]) == ("ETHUSDT", "5m")


def test_reconciler_starts_and_stops_log_signal_symbol_interval_and_reason(
    db_url: str, logs: JsonLogs
) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="15m")
        lost = f.signal(s.db, trader, symbol="SOLUSDT")
        f.analysis(s.db, lost, "wait")  # its webhook was lost
        gone = f.signal(s.db, trader)
        gone_wf = s.db.call("register_setup_monitoring", analysis_id=f.analysis(s.db, gone), max_reanalyses=5)
        s.db.fetch_one(
            "update public.signals set status = 'expired' where id = %(s)s returning id", {"s": gone}
        )

        out = reconciler.handler({}, LambdaContext("reconciler"))
        [registered] = out["registered_setup"]
        started = logs.one("Workflow started", workflow_id=registered)
        assert (started["signal_id"], started["symbol"], started["interval"], started["via"]) == (
            str(lost),
            "SOLUSDT",
            "15m",
            "reconciler",
        )
        stopped = logs.one("Workflow stopped", workflow_id=gone_wf["workflow_id"])
        assert (stopped["signal_id"], stopped["reason"], stopped["via"]) == (
            str(gone),
            "signal_expired",
            "reconciler",
        )
