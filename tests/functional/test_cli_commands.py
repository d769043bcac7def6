"""Every reporting `cmon` command through the real entry point, human and `--json`:
`workflows list/show/stop`, `metrics`, `cost`, `db migrate`. What they print is the
contract an operator reads, so the tests assert the printed values against the rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from functions.adapters.postgres import Database
from functions.cli import main
from tests.support import factories as f

T0 = datetime(2025, 10, 25, 10, 29, 59, 999000, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    assert main(list(argv)) == code
    return capsys.readouterr().out


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    return json.loads(run(capsys, *argv, "--json"))


def a_history(db: Database) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A setup workflow with an analysis and an error, and a position workflow with a decision."""
    trader = f.trader(db, interval="5m")
    signal = f.signal(db, trader, symbol="ETHUSDT")
    setup = uuid.UUID(
        db.call("register_setup_monitoring", analysis_id=f.analysis(db, signal), max_reanalyses=5)[
            "workflow_id"
        ]
    )
    db.call("claim_candle", workflow_id=setup, candle_time=T0, lease_seconds=300)
    db.call(
        "record_setup_analysis",
        workflow_id=setup,
        candle_time=T0,
        decision="wait",
        confidence=Decimal("0.64"),
        total_tokens=1234,
        latency_ms=1500,
    )
    later = T0.replace(minute=34)
    db.call(
        "record_workflow_failure",
        workflow_id=setup,
        candle_time=later,
        error_kind="llm_unavailable",
        message="llm-proxy answered HTTP 503",
        max_errors=5,
    )
    position = f.position(db, trader, symbol="SOLUSDT", stop_loss="49000")
    managed = uuid.UUID(db.call("register_position_management", position_id=position)["workflow_id"])
    db.call("claim_candle", workflow_id=managed, candle_time=T0, lease_seconds=300)
    db.call(
        "record_management_decision",
        workflow_id=managed,
        candle_time=T0,
        action="adjust_sl",
        params={"stop_loss": "49500"},
        verdict="apply",
        rejection_reason=None,
        price=Decimal("50000"),
        expected_version=0,
        new_stop_loss=Decimal("49500"),
        total_tokens=900,
    )
    return setup, managed, signal


def test_workflows_list_human_and_json_with_filters(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    setup, managed, _ = a_history(db)
    rows = run_json(capsys, "workflows", "list", "--database-url", db_url)
    assert {(r["id"], r["workflow_type"], r["symbol"], r["interval"], r["is_active"]) for r in rows} == {
        (str(setup), "setup_monitoring", "ETHUSDT", "5m", True),
        (str(managed), "position_management", "SOLUSDT", "5m", True),
    }
    only = run_json(capsys, "workflows", "list", "--database-url", db_url, "--type", "position_management")
    assert [r["id"] for r in only] == [str(managed)]
    by_symbol = run_json(capsys, "workflows", "list", "--database-url", db_url, "--symbol", "ETHUSDT")
    assert [r["id"] for r in by_symbol] == [str(setup)]

    db.call("stop_workflow", workflow_id=managed, reason="operator")
    active = run_json(capsys, "workflows", "list", "--database-url", db_url, "--active")
    assert [r["id"] for r in active] == [str(setup)]

    table = run(capsys, "workflows", "list", "--database-url", db_url).splitlines()
    assert table[0].split() == [
        "id",
        "workflow_type",
        "symbol",
        "interval",
        "is_active",
        "reanalysis_count",
        "consecutive_errors",
        "stopped_reason",
    ]
    lines = {line.split()[0]: line.split() for line in table[2:]}
    assert lines[str(setup)] == [str(setup), "setup_monitoring", "ETHUSDT", "5m", "True", "1", "1", "None"]
    assert lines[str(managed)] == [
        str(managed),
        "position_management",
        "SOLUSDT",
        "5m",
        "False",
        "0",
        "0",
        "operator",
    ]
    assert run(capsys, "workflows", "list", "--database-url", db_url, "--symbol", "XRPUSDT") == "(none)\n"


def test_workflows_show_prints_the_history(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    setup, managed, signal = a_history(db)
    detail = run_json(capsys, "workflows", "show", str(setup), "--database-url", db_url)
    assert (detail["id"], detail["signal_id"], detail["consecutive_errors"]) == (str(setup), str(signal), 1)
    assert [(a["analysis_type"], a["decision"], a["total_tokens"]) for a in detail["analyses"]] == [
        ("initial", "wait", 0),
        ("monitoring", "wait", 1234),
    ]
    assert [(e["error_kind"], e["message"]) for e in detail["errors"]] == [
        ("llm_unavailable", "llm-proxy answered HTTP 503")
    ]
    assert detail["decisions"] == []

    human = run(capsys, "workflows", "show", str(setup), "--database-url", db_url)
    assert f"id                           {setup}" in human
    assert "\nanalyses:\n" in human and "\nerrors:\n" in human and "decisions:" not in human
    assert "llm_unavailable  llm-proxy answered HTTP 503" in human
    [monitoring] = [line for line in human.splitlines() if line.startswith("monitoring")]
    assert monitoring.split()[-3:] == ["wait", "0.6400", "1234"]

    position = run_json(capsys, "workflows", "show", str(managed), "--database-url", db_url)
    assert [(d["action"], d["status"], d["total_tokens"]) for d in position["decisions"]] == [
        ("adjust_sl", "applied", 900)
    ]
    human = run(capsys, "workflows", "show", str(managed), "--database-url", db_url)
    assert "\ndecisions:\n" in human and "analyses:" not in human
    [decision] = [line for line in human.splitlines() if "adjust_sl" in line]
    assert decision.split()[1:4] == ["adjust_sl", "llm", "applied"]


def test_workflows_show_and_stop_refuse_bad_ids(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("show", "stop"):
        with pytest.raises(SystemExit) as usage:
            main(["workflows", command, "not-a-uuid", "--database-url", db_url])
        assert usage.value.code == 2
        assert "not a UUID: 'not-a-uuid'" in capsys.readouterr().err
    unknown = str(uuid.uuid4())
    assert main(["workflows", "show", unknown, "--database-url", db_url]) == 1
    assert capsys.readouterr().err == f"cmon: workflow {unknown} not found\n"
    assert main(["workflows", "stop", unknown, "--database-url", db_url, "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "action": "ignored",
        "workflow_id": None,
        "reason": "workflow_not_found",
        "symbol": None,
        "interval": None,
    }


def test_workflows_stop_stops_once_with_the_reason(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    setup, _, _ = a_history(db)
    first = run_json(
        capsys, "workflows", "stop", str(setup), "--database-url", db_url, "--reason", "bad_signal"
    )
    assert (first["action"], first["workflow_id"], first["reason"]) == ("stopped", str(setup), "bad_signal")
    assert (
        run(capsys, "workflows", "stop", str(setup), "--database-url", db_url) == f"already_stopped {setup}\n"
    )
    row = f.workflow(db, setup)
    assert (row["is_active"], row["stopped_reason"]) == (False, "bad_signal")


def test_metrics_human_and_json_count_the_window(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a_history(db)
    report = run_json(capsys, "metrics", "--database-url", db_url, "--hours", "2")
    assert {
        k: report[k] for k in ("window_hours", "active_setup_workflows", "active_position_workflows")
    } == {
        "window_hours": 2.0,
        "active_setup_workflows": 1,
        "active_position_workflows": 1,
    }
    # 2 analyses (initial + monitoring) and 1 decision by the LLM; 1 error out of 4 attempts
    assert (report["analyses"], report["tokens"], report["errors"]) == (3, 1234 + 900, 1)
    assert report["error_rate"] == 0.25
    assert report["analyses_per_hour"] == 1.5

    human = run(capsys, "metrics", "--database-url", db_url, "--hours", "2").splitlines()
    values = {line.split()[0]: line.split()[1] for line in human}
    assert (values["analyses"], values["tokens"], values["errors"], values["error_rate"]) == (
        "3",
        "2134",
        "1",
        "0.25",
    )
    assert any(line.startswith("error_rate") and "(warn > 1%, critical > 5%)" in line for line in human)


def test_cost_projection_and_actual_human_and_json(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(capsys, "cost")
    assert data["projection"]["breakdown"] == {
        "initial analyses": 110_000,
        "setup monitoring": 66_000,
        "position management": 88_000,
    }
    assert data["projection"]["tokens_per_day"] == 264_000
    assert data["projection"]["alarm_tokens_per_day"] == 330_000
    assert "actual" not in data
    scaled = run_json(capsys, "cost", "--signals-per-day", "50", "--tokens-per-analysis", "1000")
    assert scaled["projection"]["tokens_per_day"] == 50_000 + 30_000 + 80_000

    human = run(capsys, "cost")
    assert "projected (all users): 264,000 tokens/day  ~$0.13/day  ~$3.96/month at $0.0005/1k tokens" in human
    assert "setup monitoring     66000" in human

    a_history(db)
    actual = run_json(capsys, "cost", "--actual", "--database-url", db_url)
    assert actual["actual"]["total_tokens"] == 2134
    assert actual["against"]["ratio"] == pytest.approx(2134 / 264_000)
    human = run(capsys, "cost", "--actual", "--database-url", db_url)
    assert "actual (last 24 h): 2,134 tokens" in human and "of 264,000 expected for the 100%" in human


def test_db_migrate_human_and_json(pg_admin_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"cli_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = pg_admin_url.split("/postgres?")[0] + f"/{name}?" + pg_admin_url.split("?", 1)[1]
    files = sorted(p.stem for p in (ROOT / "supabase" / "migrations").glob("*.sql"))
    try:
        human = run(capsys, "db", "migrate", "--database-url", url)
        assert human == f"applied {len(files)} migration(s): " + ", ".join(files) + "\n"
        again = run_json(capsys, "db", "migrate", "--database-url", url)
        assert again == {
            "applied": [],
            "already_applied": [f.split("_", 1)[0] for f in files],
            "checksums_recorded": [],
        }
        assert run(capsys, "db", "migrate", "--database-url", url) == (
            f"nothing to apply: {len(files)} migrations already applied\n"
        )
        assert main(["db", "migrate", "--database-url", url, "--migrations-dir", "/nonexistent"]) == 1
        assert "no migrations folder at /nonexistent" in capsys.readouterr().err
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def test_the_installed_cmon_script_answers_json(db: Database, db_url: str) -> None:
    setup, _, _ = a_history(db)
    cmon = Path(sys.executable).parent / "cmon"
    done = subprocess.run(
        [str(cmon), "workflows", "list", "--active", "--type", "setup_monitoring", "--json"],
        env={"DATABASE_URL": db_url, "PATH": str(cmon.parent)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [r["id"] for r in json.loads(done.stdout)] == [str(setup)]
    no_db = subprocess.run(
        [str(cmon), "metrics"],
        env={"PATH": str(cmon.parent)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert no_db.returncode != 0
    assert "no database: pass --database-url or set DATABASE_URL" in no_db.stderr
