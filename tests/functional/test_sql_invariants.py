"""The invariants the SQL functions guarantee, against a real Postgres.

These hold even if the Python above them were wrong: they are what makes an
at-least-once bus safe.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from functions.adapters.postgres import Database
from functions.core.errors import DatabaseError
from tests.support import factories as f

T0 = datetime(2025, 10, 25, 10, 29, 59, 999000, tzinfo=UTC)


def _setup_workflow(db: Database, max_reanalyses: int = 10) -> tuple[uuid.UUID, uuid.UUID]:
    trader = f.trader(db)
    signal = f.signal(db, trader)
    analysis = f.analysis(db, signal, "wait")
    result = db.call("register_setup_monitoring", analysis_id=analysis, max_reanalyses=max_reanalyses)
    assert result["action"] == "registered"
    return uuid.UUID(result["workflow_id"]), signal


def _claim(db: Database, wf: uuid.UUID, at: datetime) -> dict:
    return db.call("claim_candle", workflow_id=wf, candle_time=at, lease_seconds=300)


def _record(db: Database, wf: uuid.UUID, at: datetime, decision: str, **kw: Any) -> dict:
    """The worker's protocol: claim the candle, then record + apply."""
    _claim(db, wf, at)
    return db.call("record_setup_analysis", workflow_id=wf, candle_time=at, decision=decision, **kw)


def _race(db_url: str, workers: int, call: Callable[[Database], dict]) -> list[dict]:
    """Run `call` in `workers` threads, each on its own connection, released together."""
    barrier = threading.Barrier(workers)
    results: list[dict] = []
    lock = threading.Lock()

    def worker() -> None:
        own = Database(db_url)
        try:
            own.fetch_one("select 1")  # connect before the race starts
            barrier.wait()
            outcome = call(own)
            with lock:
                results.append(outcome)
        finally:
            own.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_fifty_concurrent_claims_of_one_candle_have_exactly_one_winner(db: Database, db_url: str) -> None:
    wf, _ = _setup_workflow(db)
    results = _race(db_url, 50, lambda own: _claim(own, wf, T0))

    assert len(results) == 50
    assert sum(r["claimed"] for r in results) == 1
    assert {r["reason"] for r in results if not r["claimed"]} == {"duplicate"}
    assert f.workflow(db, wf)["last_candle_time"] == T0


def test_older_candle_after_newer_is_refused(db: Database) -> None:
    wf, _ = _setup_workflow(db)
    assert _claim(db, wf, T0 + timedelta(minutes=1))["claimed"] is True
    older = _claim(db, wf, T0)
    assert older == {"claimed": False, "reason": "older_candle"}
    assert f.workflow(db, wf)["last_candle_time"] == T0 + timedelta(minutes=1)


def test_a_claim_whose_worker_died_can_be_taken_over_after_the_lease(db: Database) -> None:
    wf, _ = _setup_workflow(db)
    assert _claim(db, wf, T0)["claimed"]
    assert _claim(db, wf, T0)["reason"] == "duplicate"
    db.fetch_one(
        "update public.workflow_schedules set claimed_at = now() - interval '10 minutes'"
        " where id = %(id)s returning id",
        {"id": wf},
    )
    assert _claim(db, wf, T0) == {
        "claimed": True,
        "reason": "lease_expired",
        "workflow_type": "setup_monitoring",
    }
    # Once an outcome is recorded, the candle is done for good.
    db.call("record_setup_analysis", workflow_id=wf, candle_time=T0, decision="wait")
    db.fetch_one(
        "update public.workflow_schedules set claimed_at = now() - interval '10 minutes'"
        " where id = %(id)s returning id",
        {"id": wf},
    )
    assert _claim(db, wf, T0)["reason"] == "duplicate"


def test_double_registration_gives_one_workflow_even_concurrently(db: Database, db_url: str) -> None:
    trader = f.trader(db)
    signal = f.signal(db, trader)
    analysis = f.analysis(db, signal, "wait")
    results = _race(
        db_url, 8, lambda own: own.call("register_setup_monitoring", analysis_id=analysis, max_reanalyses=3)
    )

    actions = sorted(r["action"] for r in results)
    assert actions == ["already_registered"] * 7 + ["registered"]
    assert len({r["workflow_id"] for r in results}) == 1
    count = db.fetch_one(
        "select count(*) as n from public.workflow_schedules where signal_id = %(s)s", {"s": signal}
    )
    assert count == {"n": 1}


def test_the_database_rejects_a_second_analysis_for_the_same_signal_and_candle(db: Database) -> None:
    _, signal = _setup_workflow(db)
    insert = (
        "insert into public.signal_analyses (signal_id, decision, analysis_type, candle_time)"
        " values (%(s)s, 'wait', 'monitoring', %(c)s) returning id"
    )
    db.fetch_one(insert, {"s": signal, "c": T0})
    with pytest.raises(DatabaseError, match="UniqueViolation"):
        db.fetch_one(insert, {"s": signal, "c": T0})


def test_the_database_rejects_a_second_decision_for_the_same_position_and_candle(db: Database) -> None:
    trader = f.trader(db)
    position = f.position(db, trader)
    insert = (
        "insert into public.management_decisions (position_id, candle_time, action, status)"
        " values (%(p)s, %(c)s, 'hold', 'applied') returning id"
    )
    db.fetch_one(insert, {"p": position, "c": T0})
    with pytest.raises(DatabaseError, match="UniqueViolation"):
        db.fetch_one(insert, {"p": position, "c": T0})


def test_recording_the_same_candle_twice_applies_once(db: Database) -> None:
    wf, _signal = _setup_workflow(db, max_reanalyses=10)
    first = _record(db, wf, T0, "wait")
    second = _record(db, wf, T0, "wait")
    assert first["outcome"] == "continued"
    assert second == {"outcome": "duplicate"}
    assert f.workflow(db, wf)["reanalysis_count"] == 1


def test_five_failures_disable_the_workflow_and_notify_its_user_once(db: Database) -> None:
    wf, _ = _setup_workflow(db)
    outcomes = [
        db.call(
            "record_workflow_failure",
            workflow_id=wf,
            candle_time=T0 + timedelta(minutes=i),
            error_kind="llm_unavailable",
            message=f"HTTP 500 #{i}",
            max_errors=5,
        )
        for i in range(6)
    ]
    assert [o["consecutive_errors"] for o in outcomes] == [1, 2, 3, 4, 5, 6]
    assert [o["disabled"] for o in outcomes] == [False, False, False, False, True, False]
    row = f.workflow(db, wf)
    assert (row["is_active"], row["stopped_reason"], row["consecutive_errors"]) == (False, "auto_disabled", 6)
    notes = db.fetch_all(
        "select kind, payload from public.notifications where workflow_id = %(w)s", {"w": wf}
    )
    assert len(notes) == 1
    assert notes[0]["kind"] == "workflow_disabled"
    assert db.fetch_one(
        "select count(*) as n from public.workflow_errors where workflow_id = %(w)s", {"w": wf}
    ) == {"n": 6}


def test_a_success_resets_the_error_counter(db: Database) -> None:
    wf, _ = _setup_workflow(db)
    for i in range(4):
        db.call(
            "record_workflow_failure",
            workflow_id=wf,
            candle_time=T0 + timedelta(minutes=i),
            error_kind="llm_unavailable",
            message="boom",
            max_errors=5,
        )
    assert _record(db, wf, T0 + timedelta(minutes=5), "wait")["outcome"] == "continued"
    assert f.workflow(db, wf)["consecutive_errors"] == 0
    db.call(
        "record_workflow_failure",
        workflow_id=wf,
        candle_time=T0 + timedelta(minutes=6),
        error_kind="llm_unavailable",
        message="boom",
        max_errors=5,
    )
    assert f.workflow(db, wf)["is_active"] is True


def test_wait_until_max_reanalyses_expires_the_signal(db: Database) -> None:
    wf, signal = _setup_workflow(db, max_reanalyses=3)
    outcomes = [_record(db, wf, T0 + timedelta(minutes=i), "wait")["outcome"] for i in range(3)]
    assert outcomes == ["continued", "continued", "expired"]
    assert f.workflow(db, wf)["stopped_reason"] == "max_reanalyses"
    assert db.fetch_one("select status from public.signals where id = %(s)s", {"s": signal}) == {
        "status": "expired"
    }
    assert _claim(db, wf, T0 + timedelta(minutes=9))["reason"] == "inactive"


def test_enter_trade_opens_the_position_and_registers_its_management(db: Database) -> None:
    wf, _signal = _setup_workflow(db)
    plan = {"side": "long", "entry": "64200", "stop_loss": "63800", "take_profit": "65100"}
    out = _record(db, wf, T0, "enter_trade", trade_plan=plan, price=Decimal("64231.50"))
    assert out["outcome"] == "entered"
    pos = db.fetch_one("select * from public.positions where id = %(p)s", {"p": out["position_id"]})
    assert pos is not None
    assert (pos["side"], pos["entry_price"], pos["stop_loss"], pos["take_profit"], pos["status"]) == (
        "long",
        Decimal("64200"),
        Decimal("63800"),
        Decimal("65100"),
        "open",
    )
    managed = f.workflow(db, out["position_workflow_id"])
    assert (managed["workflow_type"], managed["is_active"]) == ("position_management", True)
    assert f.workflow(db, wf)["stopped_reason"] == "entered"
    # The position's own webhook then finds it registered.
    again = db.call("register_position_management", position_id=pos["id"], check_gate=True)
    assert again["action"] == "already_registered"


def test_bad_setup_stops_and_expires(db: Database) -> None:
    wf, signal = _setup_workflow(db)
    assert _record(db, wf, T0, "bad_setup")["outcome"] == "bad_setup"
    assert db.fetch_one("select status from public.signals where id = %(s)s", {"s": signal}) == {
        "status": "expired"
    }


def _position_workflow(db: Database, **kw: Any) -> tuple[uuid.UUID, uuid.UUID]:
    trader = f.trader(db)
    position = f.position(db, trader, **kw)
    out = db.call("register_position_management", position_id=position, check_gate=True)
    return uuid.UUID(out["workflow_id"]), position


def _decide(db: Database, wf: uuid.UUID, at: datetime, action: str, **kw: object) -> dict:
    params = {
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


def test_a_management_decision_for_an_older_candle_is_rejected_as_stale(db: Database) -> None:
    wf, position = _position_workflow(db, stop_loss="49000")
    _claim(db, wf, T0)
    _claim(db, wf, T0 + timedelta(minutes=1))
    out = _decide(db, wf, T0, "adjust_sl", new_stop_loss=Decimal("49500"))
    assert out["outcome"] == "rejected"
    assert out["reason"] == "stale_candle"
    assert db.fetch_one("select stop_loss from public.positions where id = %(p)s", {"p": position}) == {
        "stop_loss": Decimal("49000")
    }


def test_the_database_refuses_a_stop_loss_above_a_longs_price(db: Database) -> None:
    wf, position = _position_workflow(db, stop_loss="49000")
    _claim(db, wf, T0)
    out = _decide(db, wf, T0, "adjust_sl", new_stop_loss=Decimal("50100"))
    assert out["reason"] == "stop_loss_on_wrong_side_of_price"
    assert db.fetch_one(
        "select stop_loss, version from public.positions where id = %(p)s", {"p": position}
    ) == {"stop_loss": Decimal("49000"), "version": 0}


def test_reduce_then_close_book_realised_pnl_and_stop_the_workflow(db: Database) -> None:
    wf, position = _position_workflow(db, side="short", entry="3000", contracts="2")
    _claim(db, wf, T0)
    reduced = _decide(db, wf, T0, "reduce", reduce_fraction=Decimal("0.25"), price=Decimal("2900"))
    assert reduced["outcome"] == "applied"
    _claim(db, wf, T0 + timedelta(minutes=1))
    closed = _decide(db, wf, T0 + timedelta(minutes=1), "close", price=Decimal("2950"), expected_version=1)
    assert closed["workflow_stopped"] is True
    pos = db.fetch_one("select * from public.positions where id = %(p)s", {"p": position})
    assert pos is not None
    # short: (3000-2900)*0.5 + (3000-2950)*1.5 = 50 + 75
    assert (pos["status"], pos["contracts"], pos["realized_pnl"], pos["exit_price"]) == (
        "closed",
        Decimal("1.50"),
        Decimal("125.00"),
        Decimal("2950"),
    )
    assert f.workflow(db, wf)["stopped_reason"] == "position_closed"


def test_reconciler_registers_what_webhooks_missed_and_stops_closed_ones(db: Database) -> None:
    trader = f.trader(db)
    waiting = f.signal(db, trader)
    f.analysis(db, waiting, "wait")
    open_position = f.position(db, trader)
    wf_closed, closed_position = _position_workflow(db)
    db.fetch_one(
        "update public.positions set status = 'closed', closed_at = now() where id = %(p)s returning id",
        {"p": closed_position},
    )

    first = db.call("reconcile_workflows", max_reanalyses=5)
    second = db.call("reconcile_workflows", max_reanalyses=5)

    assert len(first["registered_setup"]) == 1
    assert len(first["registered_positions"]) == 1
    assert first["stopped"] == [str(wf_closed)]
    assert (second["registered_setup"], second["registered_positions"], second["stopped"]) == ([], [], [])
    assert db.fetch_one(
        "select count(*) as n from public.workflow_schedules where position_id = %(p)s and is_active",
        {"p": open_position},
    ) == {"n": 1}


def test_claim_stops_a_workflow_whose_position_was_closed(db: Database) -> None:
    wf, position = _position_workflow(db)
    db.fetch_one(
        "update public.positions set status = 'closed' where id = %(p)s returning id", {"p": position}
    )
    assert _claim(db, wf, T0) == {"claimed": False, "reason": "entity_closed"}
    assert f.workflow(db, wf)["stopped_reason"] == "position_closed"


def test_rollout_gate_keeps_users_out_until_enabled(db: Database) -> None:
    db.fetch_one("update public.rollout_settings set percent = 0 returning id")
    trader = f.trader(db)
    signal = f.signal(db, trader)
    analysis = f.analysis(db, signal, "wait")
    assert db.call("register_setup_monitoring", analysis_id=analysis, max_reanalyses=3) == {
        "action": "ignored",
        "reason": "rollout_gate",
    }
    user_id = db.fetch_one("select user_id from public.traders where id = %(t)s", {"t": trader})
    assert user_id is not None
    db.fetch_one(
        "update public.rollout_settings set allow_user_ids = array[%(u)s::uuid] returning id",
        {"u": user_id["user_id"]},
    )
    assert (
        db.call("register_setup_monitoring", analysis_id=analysis, max_reanalyses=3)["action"] == "registered"
    )


TABLES = [
    "user_profiles",
    "llm_calls",
    "traders",
    "signals",
    "signal_analyses",
    "positions",
    "workflow_schedules",
    "management_decisions",
    "notifications",
    "workflow_errors",
]


def _populate(db: Database) -> uuid.UUID:
    """One user with a row in every user-facing table."""
    uid = f.user(db)
    wf, _ = _setup_workflow_for(db, uid)
    db.call("claim_candle", workflow_id=wf, candle_time=T0, lease_seconds=300)
    db.call(
        "record_setup_analysis",
        workflow_id=wf,
        candle_time=T0,
        decision="enter_trade",
        trade_plan={"side": "long", "entry": "100"},
        price=Decimal("100"),
    )
    pwf = db.fetch_one(
        "select w.id from public.workflow_schedules w"
        " join public.traders t on t.id = w.trader_id"
        " where t.user_id = %(u)s and w.workflow_type = 'position_management'",
        {"u": uid},
    )
    assert pwf is not None
    db.call("claim_candle", workflow_id=pwf["id"], candle_time=T0, lease_seconds=300)
    _decide(db, pwf["id"], T0, "hold", price=Decimal("100"))
    for i in range(5):
        db.call(
            "record_workflow_failure",
            workflow_id=pwf["id"],
            candle_time=T0 + timedelta(minutes=i + 1),
            error_kind="llm_unavailable",
            message="boom",
            max_errors=5,
        )
    return uid


def _setup_workflow_for(db: Database, uid: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    trader = f.trader(db, uid)
    signal = f.signal(db, trader)
    analysis = f.analysis(db, signal, "wait")
    out = db.call("register_setup_monitoring", analysis_id=analysis, max_reanalyses=3)
    return uuid.UUID(out["workflow_id"]), signal


def _counts_as_service(db: Database) -> dict[str, int]:
    return {t: db.fetch_one(f"select count(*) as n from public.{t}")["n"] for t in TABLES}  # type: ignore[index]


def test_rls_a_user_reads_only_their_own_rows_and_writes_nothing(db: Database, db_url: str) -> None:
    alice = _populate(db)
    alone = _counts_as_service(db)  # what one user owns, table by table
    bob = _populate(db)
    assert _counts_as_service(db) == {t: 2 * n for t, n in alone.items()}
    assert all(n >= 1 for n in alone.values()), alone
    with psycopg.connect(db_url) as conn:
        for me, other in ((alice, bob), (bob, alice)):
            conn.execute("set local role authenticated")
            conn.execute("select set_config('request.jwt.claims', %s, true)", (f'{{"sub": "{me}"}}',))
            seen = {
                t: conn.execute(f"select count(*) from public.{t}").fetchone()[0]  # type: ignore[index]
                for t in TABLES
            }
            assert seen == alone  # exactly their own rows, in every table
            leaked = conn.execute(
                "select count(*) from public.traders where user_id = %s", (str(other),)
            ).fetchone()
            assert leaked == (0,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("update public.signals set status = 'expired'")
            conn.rollback()
        conn.execute("set local role anon")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select count(*) from public.signals")
        conn.rollback()
        conn.execute("set local role service_role")
        both = conn.execute("select count(*) from public.user_profiles").fetchone()
        assert both == (2,)


def test_the_adapter_reconnects_after_its_connection_is_killed(db: Database, pg_admin_url: str) -> None:
    from functions.core.errors import DatabaseUnavailable

    pid = db.fetch_one("select pg_backend_pid() as pid")
    assert pid is not None
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(%s)", (pid["pid"],))
    with pytest.raises(DatabaseUnavailable):
        db.fetch_one("select 1 as one")
    assert db.fetch_one("select 1 as one") == {"one": 1}  # a fresh connection, no restart
    again = db.fetch_one("select pg_backend_pid() as pid")
    assert again is not None and again["pid"] != pid["pid"]


# Review findings: each would have let a wrong answer through.


def test_a_trade_plan_that_does_not_bracket_its_entry_opens_nothing(db: Database) -> None:
    wf, _ = _setup_workflow(db)
    inverted = {"side": "long", "entry": "100", "stop_loss": "110", "take_profit": "90"}
    with pytest.raises(DatabaseError, match="does not bracket"):
        _record(db, wf, T0, "enter_trade", trade_plan=inverted, price=Decimal("100"))
    assert db.fetch_all("select id from public.positions") == []
    assert db.fetch_all("select id from public.signal_analyses where candle_time is not null") == []


def test_a_reject_verdict_without_a_reason_is_still_a_rejection(db: Database) -> None:
    wf, position = _position_workflow(db)
    _claim(db, wf, T0)
    out = _decide(db, wf, T0, "close", verdict="reject", rejection_reason=None)
    assert (out["outcome"], out["reason"]) == ("rejected", "rejected")
    assert db.fetch_one("select status from public.positions where id = %(p)s", {"p": position}) == {
        "status": "open"
    }


@pytest.mark.parametrize("missing", ["price", "expected_version"])
def test_a_null_argument_rejects_instead_of_skipping_a_check(db: Database, missing: str) -> None:
    wf, position = _position_workflow(db, stop_loss="49000")
    _claim(db, wf, T0)
    out = _decide(db, wf, T0, "adjust_sl", new_stop_loss=Decimal("999999"), **{missing: None})
    assert out["outcome"] == "rejected"
    assert db.fetch_one("select stop_loss from public.positions where id = %(p)s", {"p": position}) == {
        "stop_loss": Decimal("49000")
    }


def test_a_signal_cancelled_during_the_llm_call_is_left_cancelled(db: Database) -> None:
    wf, signal = _setup_workflow(db)
    _claim(db, wf, T0)
    db.fetch_one(
        "update public.signals set status = 'cancelled' where id = %(s)s returning id", {"s": signal}
    )
    out = db.call(
        "record_setup_analysis",
        workflow_id=wf,
        candle_time=T0,
        decision="enter_trade",
        trade_plan={"side": "long", "entry": "100"},
        price=Decimal("100"),
    )
    assert (out["outcome"], out["reason"]) == ("not_applied", "signal_cancelled")
    assert db.fetch_one("select status from public.signals where id = %(s)s", {"s": signal}) == {
        "status": "cancelled"
    }
    assert db.fetch_all("select id from public.positions") == []
    assert f.workflow(db, wf)["stopped_reason"] == "signal_cancelled"


def test_a_setup_answer_for_a_superseded_candle_is_recorded_but_not_applied(db: Database) -> None:
    wf, signal = _setup_workflow(db)
    _claim(db, wf, T0)
    _claim(db, wf, T0 + timedelta(minutes=1))  # a newer close was claimed meanwhile
    out = db.call("record_setup_analysis", workflow_id=wf, candle_time=T0, decision="bad_setup")
    assert (out["outcome"], out["reason"]) == ("not_applied", "stale_candle")
    assert db.fetch_one("select status from public.signals where id = %(s)s", {"s": signal}) == {
        "status": "monitoring"
    }
    assert f.workflow(db, wf)["is_active"] is True


def test_a_null_in_the_rollout_lists_never_opens_the_gate(db: Database) -> None:
    db.fetch_one(
        "update public.rollout_settings set percent = 0, tiers = array['elite'],"
        " allow_user_ids = array[null]::uuid[], deny_user_ids = array[null]::uuid[] returning id"
    )
    trader = f.trader(db, f.user(db, "free"))
    analysis = f.analysis(db, f.signal(db, trader), "wait")
    assert db.call("register_setup_monitoring", analysis_id=analysis, max_reanalyses=3) == {
        "action": "ignored",
        "reason": "rollout_gate",
    }


def test_an_edit_made_elsewhere_invalidates_a_decision_computed_before_it(db: Database) -> None:
    wf, position = _position_workflow(db, stop_loss="49000")
    _claim(db, wf, T0)
    # The user moves the stop in the UI while the LLM is thinking about version 0.
    db.fetch_one(
        "update public.positions set stop_loss = 49800 where id = %(p)s returning id", {"p": position}
    )
    out = _decide(db, wf, T0, "adjust_sl", new_stop_loss=Decimal("49500"))
    assert (out["outcome"], out["reason"]) == ("rejected", "position_changed")
    assert db.fetch_one(
        "select stop_loss, version from public.positions where id = %(p)s", {"p": position}
    ) == {"stop_loss": Decimal("49800"), "version": 1}


def test_a_transient_initial_failure_lets_the_reconciler_queue_the_signal_again(db: Database) -> None:
    trader = f.trader(db, auto_analyze=True)
    signal = f.signal(db, trader)
    db.fetch_one(
        "update public.signals set created_at = now() - interval '5 minutes' where id = %(s)s returning id",
        {"s": signal},
    )
    assert db.call("claim_initial_analysis", signal_id=signal, lease_seconds=300)["claimed"]
    db.call(
        "record_initial_failure",
        signal_id=signal,
        error_kind="llm_invalid_answer",
        message="bad",
        release_claim=False,
    )
    assert db.fetch_all("select * from public.signals_missing_initial_analysis()") == []
    db.call(
        "record_initial_failure",
        signal_id=signal,
        error_kind="llm_unavailable",
        message="503",
        release_claim=True,
    )
    missing = db.fetch_all("select * from public.signals_missing_initial_analysis() as id")
    assert [r["id"] for r in missing] == [signal]
