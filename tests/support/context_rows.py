"""The rows the job-context golden test and `bench.bench_context` read, and the four
reads that `setup_job_context` / `position_job_context` replaced (the oracle): the old
`PostgresRepository.setup_context` / `position_context`, verbatim."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import quote
from uuid import UUID

from functions.adapters.operations import json_ready
from functions.adapters.postgres import Database
from functions.core.errors import NotFound
from functions.core.models import PositionContext, PositionSnapshot, SetupContext

T0 = datetime.fromisoformat("2025-10-25T10:00:00+00:00")
USER = UUID("00000000-0000-4000-8000-00000000a001")
TRADER = UUID("00000000-0000-4000-8000-00000000a002")
SIGNAL = UUID("00000000-0000-4000-8000-00000000a003")
POSITION = UUID("00000000-0000-4000-8000-00000000a004")
# Analyses: more than the prompt's history, two with the same created_at (the id decides).
ANALYSES = [UUID(f"00000000-0000-4000-8000-0000000b000{i}") for i in range(8)]


def legacy_setup_context(
    db: Database, *, workflow_id: UUID | None = None, signal_id: UUID | None = None
) -> SetupContext:
    if workflow_id is not None:
        wf = db.fetch_one(
            "select signal_id from public.workflow_schedules where id = %(id)s", {"id": workflow_id}
        )
        if wf is None:
            raise NotFound(f"workflow {workflow_id} not found")
        signal_id = wf["signal_id"]
    signal = db.fetch_one("select * from public.signals where id = %(id)s", {"id": signal_id})
    if signal is None:
        raise NotFound(f"signal {signal_id} not found")
    trader = db.fetch_one(
        "select id, user_id, name, auto_analyze_signals, filter from public.traders where id = %(id)s",
        {"id": signal["trader_id"]},
    )
    previous = db.fetch_all(
        "select decision, confidence, reasoning, analysis_type, candle_time, created_at"
        " from public.signal_analyses where signal_id = %(id)s"
        " order by created_at desc, id desc limit %(n)s",
        {"id": signal_id, "n": 5},
    )
    return SetupContext(
        workflow_id=workflow_id,
        signal_id=signal["id"],
        signal=json_ready(signal),
        trader=json_ready(trader or {}),
        previous_analyses=[json_ready(r) for r in previous],
    )


def legacy_position_context(db: Database, workflow_id: UUID) -> PositionContext:
    row = db.fetch_one(
        "select p.*, w.id as workflow_id from public.workflow_schedules w"
        " join public.positions p on p.id = w.position_id where w.id = %(id)s",
        {"id": workflow_id},
    )
    if row is None:
        raise NotFound(f"position workflow {workflow_id} not found")
    recent = db.fetch_all(
        "select candle_time, action, params, status, rejection_reason, price, reasoning"
        " from public.management_decisions where position_id = %(id)s"
        " order by candle_time desc limit %(n)s",
        {"id": row["id"], "n": 5},
    )
    snapshot = PositionSnapshot.model_validate(row)
    row.pop("workflow_id")
    return PositionContext(
        workflow_id=workflow_id,
        trader_id=row["trader_id"],
        position=snapshot,
        position_row=json_ready(row),
        recent_decisions=[json_ready(r) for r in recent],
    )


def seed(db: Database) -> tuple[UUID, UUID]:
    """Rows that exercise every formatting rule; returns (setup workflow, position workflow)."""
    db.fetch_one(
        "insert into public.user_profiles (id, email, subscription_tier, created_at)"
        " values (%(u)s, 'zoë@example.test', 'elite', %(t)s) returning id",
        {"u": USER, "t": T0},
    )
    db.fetch_one(
        "insert into public.traders (id, user_id, name, auto_analyze_signals, filter, created_at)"
        " values (%(t)s, %(u)s, %(n)s, true, %(f)s::jsonb, %(at)s) returning id",
        {
            "t": TRADER,
            "u": USER,
            "n": 'Zoë "the breakout" trader\n',
            "f": '{"interval": "1m", "min_confidence": 0.70, "tags": ["a", "é"], "tiny": 1e-7,'
            ' "big": 12345678901234567890}',
            "at": T0,
        },
    )
    db.fetch_one(
        "insert into public.signals (id, trader_id, symbol, status, created_at, updated_at)"
        " values (%(s)s, %(t)s, 'BTCUSDT', 'monitoring', %(c)s, %(u)s) returning id",
        {"s": SIGNAL, "t": TRADER, "c": T0 + timedelta(microseconds=123456), "u": T0 + timedelta(seconds=5)},
    )
    for i, analysis_id in enumerate(ANALYSES):
        initial = i == 0
        db.fetch_one(
            "insert into public.signal_analyses (id, signal_id, decision, confidence, reasoning, trade_plan,"
            " analysis_type, candle_time, total_tokens, created_at) values (%(id)s, %(s)s, %(d)s, %(c)s,"
            " %(r)s, %(p)s::jsonb, %(ty)s, %(ct)s, 1100, %(at)s) returning id",
            {
                "id": analysis_id,
                "s": SIGNAL,
                "d": "wait",
                "c": Decimal("0.6200") if i % 2 else Decimal("0.5"),
                "r": f"reason {i}: “quoted” — ünïcode\t{'x' * i}",
                "p": json.dumps({"side": "long", "entry": "64200.10", "stop_loss": 63800.5})
                if i == 3
                else None,
                "ty": "initial" if initial else "monitoring",
                "ct": None if initial else T0 + timedelta(minutes=i, microseconds=-1000 if i % 2 else 0),
                # The last two share a created_at: `id desc` orders them.
                "at": T0 + timedelta(minutes=min(i, 6), seconds=1, microseconds=999 * min(i, 6)),
            },
        )
    setup_wf = db.call("register_setup_monitoring", analysis_id=ANALYSES[0], max_reanalyses=10)
    db.fetch_one(
        "insert into public.positions (id, trader_id, signal_id, symbol, side, entry_price, contracts,"
        " initial_contracts, stop_loss, take_profit, opened_at) values (%(p)s, %(t)s, %(s)s, 'BTCUSDT',"
        " 'long', 64200.50, 0.00150000, 0.00150000, 63800.0, null, %(at)s) returning id",
        {"p": POSITION, "t": TRADER, "s": SIGNAL, "at": T0 + timedelta(minutes=7)},
    )
    position_wf = db.call("register_position_management", position_id=POSITION, check_gate=False)
    for i in range(7):
        db.fetch_one(
            "insert into public.management_decisions (position_id, candle_time, action, params, status,"
            " rejection_reason, price, reasoning, confidence) values (%(p)s, %(ct)s, %(a)s, %(pa)s::jsonb,"
            " %(st)s, %(rr)s, %(pr)s, %(r)s, 0.7000) returning id",
            {
                "p": POSITION,
                "ct": T0 + timedelta(minutes=8 + i, microseconds=-1 if i % 3 == 0 else 0),
                "a": "adjust_sl" if i % 2 else "hold",
                "pa": json.dumps({"stop_loss": "63900.00", "weight": 0.25}) if i % 2 else "{}",
                "st": "rejected" if i == 5 else "applied",
                "rr": "stop_loss_loosened" if i == 5 else None,
                "pr": Decimal("64231.50") + i,
                "r": f"décision {i}",
            },
        )
    return UUID(setup_wf["workflow_id"]), UUID(position_wf["workflow_id"])


def in_zone(url: str, zone: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options={quote(f'-c TimeZone={zone}')}"
