"""Dynamic subscriptions read from a real, migrated Postgres: the active workflows' pairs
of the feed's own market only."""

from __future__ import annotations

import asyncio

from feed_service.streams import StreamId
from feed_service.subscriptions import WorkflowStreams
from functions.adapters.postgres import Database
from functions.core.contracts import Market
from tests.support import factories as f


def _workflow(db: Database, symbol: str, interval: str, market: str, *, active: bool = True) -> None:
    trader = f.trader(db, interval=interval)
    signal = f.signal(db, trader, symbol=symbol)
    db.fetch_one(
        "insert into public.workflow_schedules (workflow_type, signal_id, trader_id, symbol, interval,"
        " market, is_active, stopped_reason) values ('setup_monitoring', %(s)s, %(t)s, %(sym)s, %(i)s,"
        " %(m)s, %(a)s, case when %(a)s then null else 'test' end) returning id",
        {"s": signal, "t": trader, "sym": symbol, "i": interval, "m": market, "a": active},
    )


def test_active_workflow_pairs_of_the_feeds_market_become_streams(db: Database, db_url: str) -> None:
    _workflow(db, "BTCUSDT", "1m", "spot")
    _workflow(db, "BTCUSDT", "1m", "spot")
    _workflow(db, "ETHUSDT", "5m", "spot")
    _workflow(db, "SOLUSDT", "1h", "spot", active=False)
    _workflow(db, "XRPUSDT", "1m", "usdm")
    _workflow(db, "BTCUSDT", "15m", "usdm")

    spot = asyncio.run(WorkflowStreams(db_url, Market.SPOT)())
    usdm = asyncio.run(WorkflowStreams(db_url, Market.USDM)())

    assert spot == {StreamId("BTCUSDT", "1m"), StreamId("ETHUSDT", "5m")}
    assert usdm == {StreamId("XRPUSDT", "1m"), StreamId("BTCUSDT", "15m")}


def test_an_unusable_pair_is_skipped_not_fatal(db: Database, db_url: str) -> None:
    _workflow(db, "BTCUSDT", "1m", "spot")
    _workflow(db, "BNBUSDT", "1m", "spot")
    db.fetch_one("update public.workflow_schedules set interval = '7m' where symbol = 'BNBUSDT' returning id")

    assert asyncio.run(WorkflowStreams(db_url, Market.SPOT)()) == {StreamId("BTCUSDT", "1m")}
