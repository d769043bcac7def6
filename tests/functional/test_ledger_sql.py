"""The ledger's SQL on a real Postgres: one clock (cmon_now), staleness and the cap at the
claim, failures with usage, the resume hint, the projection's rollout share."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from functions.adapters.postgres import Database
from functions.cli import main
from functions.core import intervals
from tests.support import factories as f

T0 = datetime(2025, 10, 25, 10, 29, 59, 999000, tzinfo=UTC)


def _setup_workflow(db: Database, user: uuid.UUID | None = None, interval: str = "1m") -> uuid.UUID:
    trader = f.trader(db, user, interval=interval)
    signal = f.signal(db, trader)
    out = db.call("register_setup_monitoring", analysis_id=f.analysis(db, signal), max_reanalyses=10)
    return uuid.UUID(out["workflow_id"])


def _at(db_url: str, now: datetime, sql: str, params: dict[str, Any]) -> Any:
    """Run one statement in a transaction whose cmon_now() is `now` (the replay's clock)."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        conn.execute("select set_config('cmon.now', %s, true)", (now.isoformat(),))
        row = conn.execute(sql, params).fetchone()
        assert row is not None
        return row["result"]


def _claim_at(db_url: str, now: datetime, wf: uuid.UUID, candle_time: datetime, stale: int | None = 2) -> Any:
    return _at(
        db_url,
        now,
        "select public.claim_candle(p_workflow_id => %(w)s, p_candle_time => %(t)s,"
        " p_lease_seconds => 300, p_stale_intervals => %(s)s) as result",
        {"w": wf, "t": candle_time, "s": stale},
    )


def test_cmon_now_is_the_setting_when_set_and_now_otherwise(db: Database, db_url: str) -> None:
    assert _at(db_url, T0, "select public.cmon_now() as result", {}) == T0
    live = db.fetch_one("select public.cmon_now() = now() as same")
    assert live == {"same": True}


@pytest.mark.parametrize("interval", intervals.SUPPORTED)
def test_interval_seconds_matches_the_python_interval_math(db: Database, interval: str) -> None:
    row = db.fetch_one("select public.interval_seconds(%(i)s) as s", {"i": interval})
    assert row == {"s": intervals.interval_ms(interval) // 1000}


def test_interval_seconds_of_an_unknown_interval_is_null(db: Database) -> None:
    for bad in ("2m", "0m", "m", "1y", ""):
        assert db.fetch_one("select public.interval_seconds(%(i)s) as s", {"i": bad}) == {"s": None}


def test_the_claim_judges_staleness_by_the_database_clock_in_intervals(db: Database, db_url: str) -> None:
    wf = _setup_workflow(db, interval="5m")  # 2 intervals = 10 minutes
    assert _claim_at(db_url, T0 + timedelta(minutes=11), wf, T0) == {
        "claimed": False,
        "reason": "stale",
        "age_seconds": 660,
    }
    assert f.workflow(db, wf)["last_candle_time"] is None  # a refusal changes nothing
    assert _claim_at(db_url, T0 + timedelta(minutes=9), wf, T0)["claimed"] is True
    # A takeover after the lease is refused too once the candle has gone stale.
    assert _claim_at(db_url, T0 + timedelta(minutes=30), wf, T0) == {
        "claimed": False,
        "reason": "stale",
        "age_seconds": 1800,
    }
    # Without the setting (p_stale_intervals null) the age is not judged.
    later = T0 + timedelta(minutes=5)
    assert _claim_at(db_url, T0 + timedelta(days=1), wf, later, stale=None)["claimed"] is True


def test_the_cap_counts_the_users_tokens_of_the_current_utc_day(db: Database, db_url: str) -> None:
    user = f.user(db, "pro")
    wf = _setup_workflow(db, user)
    db.fetch_one("update public.rollout_settings set daily_token_cap = 1000 where id returning 1")
    day = datetime(2025, 10, 25, 23, 50, tzinfo=UTC)
    assert _claim_at(db_url, day, wf, day - timedelta(seconds=30))["claimed"] is True
    _at(
        db_url,
        day,
        "select public.record_setup_analysis(p_workflow_id => %(w)s, p_candle_time => %(t)s,"
        " p_decision => 'wait', p_total_tokens => 1000) as result",
        {"w": wf, "t": day - timedelta(seconds=30)},
    )
    c2 = day + timedelta(minutes=1)
    refused = _claim_at(db_url, c2 + timedelta(seconds=1), wf, c2)
    assert (refused["claimed"], refused["reason"], refused["tokens_today"], refused["cap"]) == (
        False,
        "token_cap",
        1000,
        1000,
    )
    assert _claim_at(db_url, c2 + timedelta(seconds=2), wf, c2)["reason"] == "token_cap"
    notes = db.fetch_all(
        "select payload ->> 'day' as day from public.notifications where kind = 'token_cap_reached'"
    )
    assert notes == [{"day": "2025-10-25"}]
    # After midnight UTC the same user is under the cap again.
    c3 = datetime(2025, 10, 26, 0, 0, 59, 999000, tzinfo=UTC)
    assert _claim_at(db_url, c3 + timedelta(seconds=1), wf, c3)["claimed"] is True
    row = f.workflow(db, wf)
    assert (row["is_active"], row["consecutive_errors"]) == (True, 0)


def _ledger_reads_of_a_claim(db_url: str, wf: uuid.UUID, candle_time: datetime) -> tuple[bool, int]:
    """Claim in one transaction and count that transaction's scans of llm_calls (the
    statistics of the current transaction, before anything is flushed)."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        conn.execute(
            "select set_config('cmon.now', %s, true)", ((candle_time + timedelta(seconds=1)).isoformat(),)
        )
        claim = conn.execute(
            "select public.claim_candle(p_workflow_id => %(w)s, p_candle_time => %(t)s,"
            " p_lease_seconds => 300, p_stale_intervals => 2) as result",
            {"w": wf, "t": candle_time},
        ).fetchone()
        reads = conn.execute(
            "select coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0)::int as n"
            " from pg_stat_xact_user_tables where relid = 'public.llm_calls'::regclass"
        ).fetchone()
        assert claim is not None and reads is not None
        return claim["result"]["claimed"], reads["n"]


def test_an_uncapped_claim_never_reads_the_ledger(db: Database, db_url: str) -> None:
    user = f.user(db, "pro")
    wf = _setup_workflow(db, user)
    uncapped = "daily_token_cap = 0, daily_token_cap_by_tier = '{}'"
    db.fetch_one(f"update public.rollout_settings set {uncapped} where id returning 1")
    assert _ledger_reads_of_a_claim(db_url, wf, T0) == (True, 0)
    # A cap (here the tier's own) makes the claim sum the user's day.
    tier_cap = """daily_token_cap_by_tier = '{"pro": 5000}'"""
    db.fetch_one(f"update public.rollout_settings set {tier_cap} where id returning 1")
    claimed, reads = _ledger_reads_of_a_claim(db_url, wf, T0 + timedelta(minutes=1))
    assert claimed is True and reads >= 1
    assert db.fetch_one("select public.user_token_cap(%(u)s) as cap", {"u": user}) == {"cap": 5000}


def test_a_refused_answer_with_usage_is_in_the_ledger_and_an_outage_is_not(db: Database) -> None:
    wf = _setup_workflow(db)
    for minute, usage in (
        (1, {"prompt_tokens": 900, "completion_tokens": 100, "total_tokens": 1000}),
        (2, {}),
    ):
        db.call(
            "record_workflow_failure",
            workflow_id=wf,
            candle_time=T0 + timedelta(minutes=minute),
            error_kind="record_rejected" if usage else "llm_unavailable",
            message="refused",
            max_errors=5,
            **usage,
        )
    rows = db.fetch_all("select outcome, total_tokens, candle_time, operation from public.llm_calls")
    assert rows == [
        {
            "outcome": "record_rejected",
            "total_tokens": 1000,
            "candle_time": T0 + timedelta(minutes=1),
            "operation": "analyze_signal",
        }
    ]


def test_a_failed_initial_analysis_with_usage_is_in_the_ledger(db: Database) -> None:
    signal = f.signal(db, f.trader(db))
    db.call(
        "record_initial_failure",
        signal_id=signal,
        error_kind="llm_invalid_answer",
        message="bad",
        release_claim=False,
        total_tokens=700,
        model="m",
    )
    rows = db.fetch_all("select signal_id, analysis_type, outcome, total_tokens, model from public.llm_calls")
    assert rows == [
        {
            "signal_id": signal,
            "analysis_type": "initial",
            "outcome": "llm_invalid_answer",
            "total_tokens": 700,
            "model": "m",
        }
    ]


def test_paper_fills_are_not_llm_calls(db: Database) -> None:
    trader = f.trader(db)
    position = f.position(db, trader, stop_loss="49000")
    wf = db.call("register_position_management", position_id=position, check_gate=True)["workflow_id"]
    db.call("claim_candle", workflow_id=wf, candle_time=T0, lease_seconds=300)
    for source in ("paper", "llm"):
        out = db.call(
            "record_management_decision",
            workflow_id=wf,
            candle_time=T0 if source == "paper" else T0 + timedelta(minutes=1),
            action="hold",
            params={},
            verdict="reject" if source == "llm" else "apply",
            rejection_reason="unknown_action" if source == "llm" else None,
            price=Decimal("50000"),
            expected_version=0,
            total_tokens=500,
            source=source,
        )
        assert out["outcome"] in ("applied", "rejected")
    assert db.fetch_all("select outcome, total_tokens from public.llm_calls") == [
        {"outcome": "ok", "total_tokens": 500}
    ]


def test_the_disabled_notification_says_how_to_resume(db: Database) -> None:
    wf = _setup_workflow(db)
    for minute in range(2):
        out = db.call(
            "record_workflow_failure",
            workflow_id=wf,
            candle_time=T0 + timedelta(minutes=minute),
            error_kind="llm_unavailable",
            message="down",
            max_errors=2,
        )
    assert out["disabled"] is True
    (note,) = db.fetch_all("select body, payload from public.notifications where kind = 'workflow_disabled'")
    for how in (f"cmon workflows resume {wf}", f"POST /workflows/{wf}/resume", "resume_my_workflow"):
        assert how in note["body"]
    assert note["payload"]["resume"] == {
        "cli": f"cmon workflows resume {wf}",
        "api": f"POST /workflows/{wf}/resume",
        "rpc": "resume_my_workflow",
        "rpc_args": {"p_workflow_id": str(wf)},
    }


def _cost(db_url: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["cost", "--actual", "--database-url", db_url, "--usd-per-1k-tokens", "0.002", "--json"]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_the_projection_follows_the_share_of_users_the_rollout_admits(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    users = [f.user(db, "elite") for _ in range(200)]
    wf = _setup_workflow(db, users[0])
    db.call("claim_candle", workflow_id=wf, candle_time=T0, lease_seconds=300)
    db.call("record_setup_analysis", workflow_id=wf, candle_time=T0, decision="wait", total_tokens=26_400)

    full = _cost(db_url, capsys)
    assert full["against"]["admitted_share"] == 1.0
    assert full["against"]["expected_tokens"] == 264_000
    assert full["actual"]["total_tokens"] == 26_400
    assert full["actual"]["cost_usd"] == pytest.approx(26_400 * 0.002 / 1000)
    assert full["ratio"] == pytest.approx(0.1)

    db.fetch_one("update public.rollout_settings set percent = 10 where id returning 1")
    admitted = db.fetch_one(
        "select count(*) filter (where public.monitoring_allowed(id)) as n from public.user_profiles"
    )
    assert admitted is not None and 0 < admitted["n"] < 200
    share = round(admitted["n"] / 200, 4)
    stage = _cost(db_url, capsys)
    assert stage["against"]["admitted_share"] == pytest.approx(share)
    assert stage["against"]["expected_tokens"] == round(264_000 * share)
    assert stage["ratio"] == pytest.approx(26_400 / (264_000 * share))
    assert stage["projection"]["tokens_per_day"] == 264_000  # the projection itself is for everyone

    db.fetch_one("update public.rollout_settings set enabled = false where id returning 1")
    closed = _cost(db_url, capsys)
    assert (closed["against"]["admitted_share"], closed["ratio"]) == (0.0, None)


def test_metrics_and_cost_print_tokens_with_their_money_for_people(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    wf = _setup_workflow(db)
    db.call("claim_candle", workflow_id=wf, candle_time=T0, lease_seconds=300)
    db.call("record_setup_analysis", workflow_id=wf, candle_time=T0, decision="wait", total_tokens=5000)
    assert main(["metrics", "--database-url", db_url, "--usd-per-1k-tokens", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "cost_usd" in out and "0.05" in out and "duplicate_candles" in out
    assert main(["cost", "--actual", "--database-url", db_url, "--usd-per-1k-tokens", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "5,000 tokens  ~$0.05" in out and "264,000 expected for the 100% of users" in out
    with pytest.raises(SystemExit) as exc:
        main(["cost", "--usd-per-1k-tokens", "-1"])
    assert exc.value.code != 0
