"""More of the README's SQL guarantees, one test each, found by the SQL mutation check
(tests/mutations/sql_mutations.py): each of these failed when its guarantee was broken
by one line in a scratch copy of the migrations, and nothing else in the suite did.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from functions.adapters.postgres import Database
from tests.support import factories as f

T0 = datetime(2025, 10, 25, 10, 29, 59, 999000, tzinfo=UTC)


def _setup(db: Database, max_reanalyses: int = 10) -> tuple[uuid.UUID, uuid.UUID]:
    signal = f.signal(db, f.trader(db))
    out = db.call(
        "register_setup_monitoring", analysis_id=f.analysis(db, signal, "wait"), max_reanalyses=max_reanalyses
    )
    return uuid.UUID(out["workflow_id"]), signal


def _position(db: Database, **kw: Any) -> tuple[uuid.UUID, uuid.UUID]:
    position = f.position(db, f.trader(db), **kw)
    out = db.call("register_position_management", position_id=position, check_gate=True)
    return uuid.UUID(out["workflow_id"]), position


def _claim(db: Database, wf: uuid.UUID, at: datetime) -> dict[str, Any]:
    return db.call("claim_candle", workflow_id=wf, candle_time=at, lease_seconds=300)


def _decide(db: Database, wf: uuid.UUID, at: datetime, action: str, **kw: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "workflow_id": wf,
        "candle_time": at,
        "action": action,
        "params": {},
        "verdict": "apply",
        "rejection_reason": None,
        "price": Decimal("50000"),
        "expected_version": 0,
    }
    params.update(kw)
    return db.call("record_management_decision", **params)


def _row(db: Database, table: str, id_: uuid.UUID) -> dict[str, Any]:
    row = db.fetch_one(f"select * from public.{table} where id = %(id)s", {"id": id_})
    assert row is not None
    return row


@pytest.mark.parametrize("decision", ["enter_trade", "bad_setup"])
def test_only_a_wait_analysis_starts_monitoring(db: Database, decision: str) -> None:
    signal = f.signal(db, f.trader(db))
    out = db.call("register_setup_monitoring", analysis_id=f.analysis(db, signal, decision), max_reanalyses=3)
    assert out == {"action": "ignored", "reason": f"decision_{decision}"}
    assert db.fetch_all("select id from public.workflow_schedules") == []


def test_stopping_twice_keeps_the_first_reason(db: Database) -> None:
    wf, _ = _setup(db)
    assert db.call("stop_workflow", workflow_id=wf, reason="first")["action"] == "stopped"
    assert db.call("stop_workflow", workflow_id=wf, reason="second") == {
        "action": "already_stopped",
        "workflow_id": str(wf),
    }
    assert _row(db, "workflow_schedules", wf)["stopped_reason"] == "first"


def test_an_inactive_workflow_cannot_claim(db: Database) -> None:
    wf, _ = _setup(db)
    db.call("stop_workflow", workflow_id=wf, reason="operator")
    assert _claim(db, wf, T0) == {"claimed": False, "reason": "inactive"}
    assert _row(db, "workflow_schedules", wf)["last_candle_time"] is None


def test_a_fresh_claim_is_not_taken_over(db: Database) -> None:
    wf, _ = _setup(db)
    assert _claim(db, wf, T0)["claimed"]
    assert _claim(db, wf, T0) == {"claimed": False, "reason": "duplicate"}


def test_a_reduce_of_the_whole_position_is_rejected(db: Database) -> None:
    wf, position = _position(db, contracts="2")
    _claim(db, wf, T0)
    out = _decide(db, wf, T0, "reduce", reduce_fraction=Decimal("1"))
    assert (out["outcome"], out["reason"]) == ("rejected", "reduce_fraction_out_of_range")
    assert _row(db, "positions", position)["contracts"] == Decimal("2")


def test_adjust_tp_beyond_the_price_applies_and_short_of_it_is_rejected(db: Database) -> None:
    wf, position = _position(db, take_profit="52000")
    _claim(db, wf, T0)
    wrong = _decide(db, wf, T0, "adjust_tp", new_take_profit=Decimal("49900"))
    assert (wrong["outcome"], wrong["reason"]) == ("rejected", "take_profit_on_wrong_side_of_price")
    assert _row(db, "positions", position)["take_profit"] == Decimal("52000")
    later = T0 + timedelta(minutes=1)
    _claim(db, wf, later)
    applied = _decide(db, wf, later, "adjust_tp", new_take_profit=Decimal("53000"))
    assert applied["outcome"] == "applied"
    row = _row(db, "positions", position)
    assert (row["take_profit"], row["version"]) == (Decimal("53000"), 1)


def test_a_decision_for_a_closed_position_is_rejected(db: Database) -> None:
    wf, position = _position(db, stop_loss="49000")
    _claim(db, wf, T0)
    db.fetch_one(
        "update public.positions set status = 'closed' where id = %(p)s returning id", {"p": position}
    )
    out = _decide(db, wf, T0, "adjust_sl", new_stop_loss=Decimal("49500"), expected_version=1)
    assert (out["outcome"], out["reason"]) == ("rejected", "position_not_open")
    assert _row(db, "positions", position)["stop_loss"] == Decimal("49000")


def test_the_same_decision_twice_applies_once(db: Database) -> None:
    wf, position = _position(db, stop_loss="49000")
    _claim(db, wf, T0)
    assert _decide(db, wf, T0, "reduce", reduce_fraction=Decimal("0.5"))["outcome"] == "applied"
    assert _decide(db, wf, T0, "reduce", reduce_fraction=Decimal("0.5"), expected_version=1) == {
        "outcome": "duplicate"
    }
    assert _row(db, "positions", position)["contracts"] == Decimal("0.5")


def test_a_management_success_resets_the_error_counter(db: Database) -> None:
    wf, _ = _position(db)
    db.call(
        "record_workflow_failure", workflow_id=wf, candle_time=T0, error_kind="llm_unavailable", message="x"
    )
    assert _row(db, "workflow_schedules", wf)["consecutive_errors"] == 1
    later = T0 + timedelta(minutes=1)
    _claim(db, wf, later)
    _decide(db, wf, later, "hold")
    assert _row(db, "workflow_schedules", wf)["consecutive_errors"] == 0


def test_the_initial_analysis_is_claimed_once_and_only_for_a_new_signal(db: Database) -> None:
    trader = f.trader(db)
    signal = f.signal(db, trader)
    assert db.call("claim_initial_analysis", signal_id=signal, lease_seconds=300)["claimed"]
    assert db.call("claim_initial_analysis", signal_id=signal, lease_seconds=300) == {
        "claimed": False,
        "reason": "duplicate",
    }
    cancelled = f.signal(db, trader, status="expired")
    assert db.call("claim_initial_analysis", signal_id=cancelled, lease_seconds=300) == {
        "claimed": False,
        "reason": "signal_expired",
    }


def test_an_initial_answer_for_a_signal_cancelled_meanwhile_is_not_applied(db: Database) -> None:
    signal = f.signal(db, f.trader(db))
    db.call("claim_initial_analysis", signal_id=signal, lease_seconds=300)
    db.fetch_one("update public.signals set status = 'expired' where id = %(s)s returning id", {"s": signal})
    out = db.call("record_initial_analysis", signal_id=signal, decision="wait")
    assert (out["outcome"], out["reason"]) == ("not_applied", "signal_expired")
    assert db.fetch_all("select id from public.workflow_schedules") == []


def test_an_initial_wait_registers_monitoring_in_the_same_call(db: Database) -> None:
    signal = f.signal(db, f.trader(db))
    db.call("claim_initial_analysis", signal_id=signal, lease_seconds=300)
    out = db.call("record_initial_analysis", signal_id=signal, decision="wait", max_reanalyses=4)
    assert out["outcome"] == "monitoring"
    wf = _row(db, "workflow_schedules", uuid.UUID(out["workflow_id"]))
    assert (wf["signal_id"], wf["is_active"], wf["max_reanalyses"]) == (signal, True, 4)
    assert _row(db, "signals", signal)["status"] == "monitoring"


def test_an_enter_trade_stops_monitoring_and_a_bad_setup_too(db: Database) -> None:
    plan = {"side": "long", "entry": "50000", "stop_loss": "49000", "take_profit": "52000"}
    for decision, kw in (("enter_trade", {"trade_plan": plan}), ("bad_setup", {})):
        wf, _ = _setup(db)
        _claim(db, wf, T0)
        db.call("record_setup_analysis", workflow_id=wf, candle_time=T0, decision=decision, **kw)
        row = _row(db, "workflow_schedules", wf)
        assert (row["is_active"], row["stopped_reason"]) == (
            False,
            decision.replace("enter_trade", "entered"),
        )


def test_the_fan_out_query_skips_stopped_workflows_and_those_at_the_candle(db: Database) -> None:
    waiting, _ = _setup(db)
    at_candle, _ = _setup(db)
    stopped, _ = _setup(db)
    _claim(db, at_candle, T0)
    db.call("stop_workflow", workflow_id=stopped, reason="operator")
    rows = db.fetch_all(
        "select workflow_id from public.workflows_for_candle('spot', 'BTCUSDT', '1m', %(t)s)", {"t": T0}
    )
    assert [r["workflow_id"] for r in rows] == [waiting]


def test_the_reconciler_registers_a_lost_open_position(db: Database) -> None:
    position = f.position(db, f.trader(db))
    out = db.call("reconcile_workflows", max_reanalyses=3)
    [registered] = out["registered_positions"]
    assert _row(db, "workflow_schedules", uuid.UUID(registered))["position_id"] == position


def test_the_gate_admits_a_percentage_of_users_by_their_stable_bucket(db: Database) -> None:
    db.fetch_one("update public.rollout_settings set enabled = true, percent = 50, tiers = null returning id")
    users = [f.user(db, "elite") for _ in range(40)]
    rows = db.fetch_all(
        "select u as user_id, public.rollout_bucket(u) as bucket, public.monitoring_allowed(u) as allowed"
        " from unnest(%(u)s::uuid[]) as u",
        {"u": users},
    )
    assert {r["allowed"] for r in rows} == {True, False}
    assert all(r["allowed"] == (r["bucket"] < 50) for r in rows)


def test_the_gate_keeps_other_tiers_and_denied_users_out(db: Database) -> None:
    db.fetch_one(
        "update public.rollout_settings set enabled = true, percent = 100, tiers = array['elite']"
        " returning id"
    )
    elite, free = f.user(db, "elite"), f.user(db, "free")
    allowed = db.fetch_one(
        "select public.monitoring_allowed(%(e)s) as elite, public.monitoring_allowed(%(f)s) as free",
        {"e": elite, "f": free},
    )
    assert allowed == {"elite": True, "free": False}
    db.fetch_one(
        "update public.rollout_settings set deny_user_ids = array[%(e)s::uuid] returning id", {"e": elite}
    )
    assert db.fetch_one("select public.monitoring_allowed(%(e)s) as ok", {"e": elite}) == {"ok": False}


def test_a_wait_on_a_finished_signal_starts_nothing(db: Database) -> None:
    signal = f.signal(db, f.trader(db), status="expired")
    out = db.call("register_setup_monitoring", analysis_id=f.analysis(db, signal, "wait"), max_reanalyses=3)
    assert out == {"action": "ignored", "reason": "signal_expired"}
    assert db.fetch_all("select id from public.workflow_schedules") == []


def test_a_closed_position_starts_no_management(db: Database) -> None:
    position = f.position(db, f.trader(db))
    db.fetch_one(
        "update public.positions set status = 'closed' where id = %(p)s returning id", {"p": position}
    )
    out = db.call("register_position_management", position_id=position, check_gate=True)
    assert out == {"action": "ignored", "reason": "position_closed"}
    assert db.fetch_all("select id from public.workflow_schedules") == []


def test_a_claim_for_a_finished_signal_stops_its_workflow(db: Database) -> None:
    wf, signal = _setup(db)
    db.fetch_one("update public.signals set status = 'entered' where id = %(s)s returning id", {"s": signal})
    assert _claim(db, wf, T0) == {"claimed": False, "reason": "entity_closed"}
    row = _row(db, "workflow_schedules", wf)
    assert (row["is_active"], row["stopped_reason"]) == (False, "signal_entered")


def test_the_reconciler_queues_lost_initial_analyses_between_one_minute_and_one_hour_old(
    db: Database,
) -> None:
    trader = f.trader(db, auto_analyze=True)
    ages = {"fresh": 0.5, "lost": 2, "old": 90, "moved_on": 2}
    ids = {name: f.signal(db, trader) for name in ages}
    db.fetch_one(
        "update public.signals set status = 'expired' where id = %(s)s returning id", {"s": ids["moved_on"]}
    )
    for name, minutes in ages.items():
        db.fetch_one(
            "update public.signals set created_at = now() - make_interval(secs => %(m)s * 60)"
            " where id = %(s)s returning id",
            {"s": ids[name], "m": minutes},
        )
    rows = db.fetch_all("select * from public.signals_missing_initial_analysis() as id")
    assert [r["id"] for r in rows] == [ids["lost"]]
