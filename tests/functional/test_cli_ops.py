"""Operator commands against a real database: migrate, metrics, rollout, rollback, cost."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest

from functions.adapters.postgres import Database
from functions.cli import main
from tests.support import factories as f


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_db_migrate_on_an_empty_database_then_nothing(
    pg_admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute("drop database if exists cli_migrate with (force)")
        conn.execute("create database cli_migrate")
    url = pg_admin_url.split("/postgres?")[0] + "/cli_migrate?" + pg_admin_url.split("?", 1)[1]
    first = run_json(capsys, "db", "migrate", "--database-url", url)
    assert len(first["applied"]) >= 2
    assert main(["db", "migrate", "--database-url", url]) == 0
    assert "nothing to apply" in capsys.readouterr().out


def test_metrics_count_what_happened(db: Database, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    trader = f.trader(db)
    signal = f.signal(db, trader)
    analysis = f.analysis(db, signal, "wait")
    wf = db.call("register_setup_monitoring", analysis_id=analysis, max_reanalyses=5)["workflow_id"]
    at = datetime(2025, 10, 25, 10, 29, 59, tzinfo=UTC)
    db.call(
        "record_setup_analysis",
        workflow_id=wf,
        candle_time=at,
        decision="wait",
        total_tokens=1100,
        latency_ms=2000,
    )
    db.call(
        "record_workflow_failure",
        workflow_id=wf,
        candle_time=at.replace(minute=31),
        error_kind="llm_unavailable",
        message="boom",
        max_errors=5,
    )
    report = run_json(capsys, "metrics", "--database-url", db_url, "--hours", "1")
    assert report["active_setup_workflows"] == 1
    assert report["analyses"] == 2  # the initial and the monitoring one
    assert report["tokens"] == 1100
    assert report["errors"] == 1
    assert report["error_rate"] == pytest.approx(1 / 3, abs=1e-3)


def test_rollout_set_and_show(db: Database, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    canary = f.user(db, "elite")
    state = run_json(
        capsys,
        "rollout",
        "set",
        "--database-url",
        db_url,
        "--percent",
        "0",
        "--tiers",
        "elite",
        "--allow",
        str(canary),
    )
    assert (state["percent"], state["tiers"], state["allow_user_ids"]) == (0, ["elite"], [str(canary)])
    other = f.signal(db, f.trader(db, f.user(db, "elite")))
    mine = f.signal(db, f.trader(db, canary))
    assert (
        db.call("register_setup_monitoring", analysis_id=f.analysis(db, other), max_reanalyses=3)["reason"]
        == "rollout_gate"
    )
    assert (
        db.call("register_setup_monitoring", analysis_id=f.analysis(db, mine), max_reanalyses=3)["action"]
        == "registered"
    )
    shown = run_json(capsys, "rollout", "show", "--database-url", db_url)
    assert shown["enabled"] is True
    assert shown["percent"] == 0


def test_rollback_stops_everything_and_closes_the_gate(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    trader = f.trader(db, f.user(db, "elite"), auto_analyze=True)
    db.call("register_setup_monitoring", analysis_id=f.analysis(db, f.signal(db, trader)), max_reanalyses=3)
    assert main(["rollback", "--database-url", db_url]) == 2  # no terminal to confirm on: refused
    assert "--yes" in capsys.readouterr().err
    assert db.fetch_one("select count(*) as n from public.workflow_schedules where is_active") == {"n": 1}
    result = run_json(capsys, "rollback", "--database-url", db_url, "--yes")
    assert (result["workflows_stopped"], result["traders_disabled"]) == (1, 1)
    assert db.fetch_one("select count(*) as n from public.workflow_schedules where is_active") == {"n": 0}
    assert db.fetch_one("select enabled from public.rollout_settings") == {"enabled": False}


def test_cost_projection_matches_the_brief(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "cost")
    assert data["projection"]["tokens_per_day"] == 264_000
    assert 3 < data["projection"]["usd_per_month"] < 5
