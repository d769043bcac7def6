"""Rows for tests, written as the rest of the platform would write them (plain SQL)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from functions.adapters.postgres import Database


def user(db: Database, tier: str = "elite") -> uuid.UUID:
    uid = uuid.uuid4()
    db.fetch_one(
        "insert into public.user_profiles (id, email, subscription_tier) values (%(id)s, %(e)s, %(t)s)"
        " returning id",
        {"id": uid, "e": f"{uid.hex[:8]}@example.test", "t": tier},
    )
    return uid


def trader(
    db: Database, user_id: uuid.UUID | None = None, *, interval: str = "1m", auto_analyze: bool = True
) -> uuid.UUID:
    user_id = user_id or user(db)
    row = db.fetch_one(
        "insert into public.traders (user_id, name, auto_analyze_signals, filter)"
        " values (%(u)s, 'test trader', %(a)s, %(f)s) returning id",
        {"u": user_id, "a": auto_analyze, "f": json.dumps({"interval": interval})},
    )
    assert row is not None
    return uuid.UUID(str(row["id"]))


def signal(db: Database, trader_id: uuid.UUID, symbol: str = "BTCUSDT", status: str = "new") -> uuid.UUID:
    row = db.fetch_one(
        "insert into public.signals (trader_id, symbol, status) values (%(t)s, %(s)s, %(st)s) returning id",
        {"t": trader_id, "s": symbol, "st": status},
    )
    assert row is not None
    return uuid.UUID(str(row["id"]))


def analysis(db: Database, signal_id: uuid.UUID, decision: str = "wait") -> uuid.UUID:
    """An initial analysis as the platform's existing auto-trigger writes it."""
    row = db.fetch_one(
        "insert into public.signal_analyses (signal_id, decision, confidence, reasoning, analysis_type)"
        " values (%(s)s, %(d)s, 0.6, 'initial', 'initial') returning id",
        {"s": signal_id, "d": decision},
    )
    assert row is not None
    return uuid.UUID(str(row["id"]))


def position(
    db: Database,
    trader_id: uuid.UUID,
    *,
    symbol: str = "BTCUSDT",
    side: str = "long",
    entry: str = "50000",
    contracts: str = "1",
    stop_loss: str | None = None,
    take_profit: str | None = None,
    signal_id: uuid.UUID | None = None,
) -> uuid.UUID:
    row = db.fetch_one(
        "insert into public.positions (trader_id, signal_id, symbol, side, entry_price, contracts,"
        " initial_contracts, stop_loss, take_profit) values (%(t)s, %(sig)s, %(s)s, %(side)s, %(e)s,"
        " %(c)s, %(c)s, %(sl)s, %(tp)s) returning id",
        {
            "t": trader_id,
            "sig": signal_id,
            "s": symbol,
            "side": side,
            "e": Decimal(entry),
            "c": Decimal(contracts),
            "sl": None if stop_loss is None else Decimal(stop_loss),
            "tp": None if take_profit is None else Decimal(take_profit),
        },
    )
    assert row is not None
    return uuid.UUID(str(row["id"]))


def workflow(db: Database, workflow_id: Any) -> dict[str, Any]:
    row = db.fetch_one("select * from public.workflow_schedules where id = %(id)s", {"id": workflow_id})
    assert row is not None
    return row
