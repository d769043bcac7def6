"""A workflow knows its market: a spot feed and a USD-M feed on one bus never drive a
workflow twice (EventBridge on moto → the real fan-out handler → SQS → worker)."""

from __future__ import annotations

import json
import uuid

import pytest

from functions.adapters.postgres import Database
from functions.core.contracts import Market
from tests.support import factories as f
from tests.support.stack import candle, running_stack

pytestmark = pytest.mark.usefixtures("moto_endpoint")


def trader_on(db: Database, market: str | None) -> uuid.UUID:
    """A trader whose filter names `market` (None: no market key, the documented default)."""
    trader = f.trader(db, interval="1m")
    flt: dict[str, str] = {"interval": "1m"} if market is None else {"interval": "1m", "market": market}
    db.fetch_one(
        "update public.traders set filter = %(f)s::jsonb where id = %(id)s returning id",
        {"f": json.dumps(flt), "id": trader},
    )
    return trader


def monitor(db: Database, trader: uuid.UUID) -> tuple[uuid.UUID, dict[str, object]]:
    signal = f.signal(db, trader)
    out = db.call("register_setup_monitoring", analysis_id=f.analysis(db, signal), max_reanalyses=5)
    return signal, out


def test_registration_takes_the_market_from_the_filter_with_spot_by_default(db: Database) -> None:
    _, default = monitor(db, trader_on(db, None))
    _, usdm = monitor(db, trader_on(db, "usdm"))
    _, spelled = monitor(db, trader_on(db, " USDM "))
    _, unknown = monitor(db, trader_on(db, "coinm"))

    assert (default["action"], default["market"]) == ("registered", "spot")
    assert (usdm["action"], usdm["market"]) == ("registered", "usdm")
    assert f.workflow(db, usdm["workflow_id"])["market"] == "usdm"
    assert f.workflow(db, default["workflow_id"])["market"] == "spot"
    assert spelled["market"] == "usdm"
    assert unknown == {"action": "ignored", "reason": "invalid_market"}


def test_the_market_match_is_in_sql(db: Database) -> None:
    _, spot = monitor(db, trader_on(db, "spot"))
    _, usdm = monitor(db, trader_on(db, "usdm"))
    c = candle()

    def matched(market: str) -> list[object]:
        rows = db.fetch_all(
            "select workflow_id from public.workflows_for_candle(p_market => %(m)s, p_symbol => 'BTCUSDT',"
            " p_interval => '1m', p_candle_time => %(t)s)",
            {"m": market, "t": c.close_time},
        )
        return [str(r["workflow_id"]) for r in rows]

    assert matched("spot") == [spot["workflow_id"]]
    assert matched("usdm") == [usdm["workflow_id"]]


def test_two_feeds_on_one_bus_drive_each_workflow_once_with_its_own_market(db_url: str) -> None:
    with running_stack(db_url) as s:
        spot_signal, spot_wf = monitor(s.db, trader_on(s.db, None))
        usdm_signal, usdm_wf = monitor(s.db, trader_on(s.db, "usdm"))
        spot_candle = candle(close="50010")
        usdm_candle = spot_candle.model_copy(update={"market": Market.USDM, "close": spot_candle.close + 3})

        s.publish(spot_candle)  # the spot feed
        s.publish(usdm_candle)  # the USD-M feed: same symbol, interval and close time
        assert s.runner.pump_fanout() == 2
        assert s.metrics.counts["JobsEnqueued"] == 2  # one per workflow, not one per (workflow, feed)
        s.runner.run_until_idle()

        calls = [c for c in s.llm.calls if c.path == "/analyze-signal"]
        markets = {c.entity_id: c.body["candle"]["market"] for c in calls}
        assert len(calls) == 2
        assert markets == {str(spot_signal): "spot", str(usdm_signal): "usdm"}
        prices = s.db.fetch_all(
            "select w.market, count(*) as n from public.signal_analyses a"
            " join public.workflow_schedules w on w.signal_id = a.signal_id"
            " where a.candle_time = %(t)s group by w.market order by w.market",
            {"t": spot_candle.close_time},
        )
        assert prices == [{"market": "spot", "n": 1}, {"market": "usdm", "n": 1}]
        assert spot_wf["workflow_id"] != usdm_wf["workflow_id"]
