"""The shadow cohort end to end: candles on the bus, the real fan-out and workers, the stub
llm-proxy over HTTP, the real SQL record functions. A shadow user's signal is analysed at
every candle and recorded, never applied; a live user beside them is applied as usual.
And `cmon rollout set --shadow-percent` / `rollout show` / `metrics` through the real CLI."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from functions.cli import main
from functions.core.contracts import AnalysisJob, JobKind
from functions.core.telemetry import MetricName
from functions.handlers import wiring
from tests.support import factories as f
from tests.support.stack import Stack, candle, next_candle, running_stack

pytestmark = pytest.mark.usefixtures("moto_endpoint")

PLAN = {"side": "long", "entry": "50000", "stop_loss": "49000", "take_profit": "52000"}


def _cohorts(s: Stack) -> tuple[uuid.UUID, uuid.UUID]:
    """A live user (on the allow list) and a shadow one (every other user is shadow)."""
    live, shadow = f.user(s.db), f.user(s.db)
    out = s.db.call(
        "rollout_update",
        changes={"percent": 0, "shadow_percent": 100, "tiers": None, "allow_user_ids": [str(live)]},
        actor="test",
    )
    assert (out["users_admitted"], out["users_shadow"]) == (1, 1)
    return live, shadow


def _wait_signal(s: Stack, user: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    trader = f.trader(s.db, user, interval="1m")
    signal = f.signal(s.db, trader)
    out = s.db.call("register_setup_monitoring", analysis_id=f.analysis(s.db, signal), max_reanalyses=50)
    assert out["action"] == "registered", out
    return signal, uuid.UUID(str(out["workflow_id"]))


def _row(s: Stack, table: str, id_: Any) -> dict[str, Any]:
    found = s.db.fetch_one(f"select * from public.{table} where id = %(id)s", {"id": id_})
    assert found is not None
    return found


def test_a_shadow_wait_is_analysed_at_each_candle_and_never_applied_beside_a_live_one(db_url: str) -> None:
    with running_stack(db_url) as s:
        live_user, shadow_user = _cohorts(s)
        live_signal, live_wf = _wait_signal(s, live_user)
        shadow_signal, shadow_wf = _wait_signal(s, shadow_user)
        assert (f.workflow(s.db, live_wf)["shadow"], f.workflow(s.db, shadow_wf)["shadow"]) == (False, True)
        enter = {"decision": "enter_trade", "confidence": 0.8, "trade_plan": PLAN}
        for signal in (live_signal, shadow_signal):
            s.llm.queue_setup(signal, "wait", "wait", enter)
        shadow_before = _row(s, "signals", shadow_signal)

        c = candle(close="50000")
        for _ in range(3):
            s.close_candle(c)
            c = next_candle(c, open_="50000", close="50000")

        shadow_rows = s.db.fetch_all(
            "select decision, shadow, candle_time from public.signal_analyses"
            " where workflow_id = %(w)s order by candle_time",
            {"w": shadow_wf},
        )
        assert [(r["decision"], r["shadow"]) for r in shadow_rows] == [
            ("wait", True),
            ("wait", True),
            ("enter_trade", True),
        ]
        assert _row(s, "signals", shadow_signal) == shadow_before  # still new, nothing applied
        assert f.workflow(s.db, shadow_wf)["stopped_reason"] == "entered"  # its own bookkeeping
        assert f.workflow(s.db, shadow_wf)["reanalysis_count"] == 2

        assert _row(s, "signals", live_signal)["status"] == "entered"
        positions = s.db.fetch_all("select id, signal_id from public.positions")
        assert [p["signal_id"] for p in positions] == [live_signal]
        live_analyses = s.db.fetch_all(
            "select shadow from public.signal_analyses where workflow_id = %(w)s", {"w": live_wf}
        )
        assert [r["shadow"] for r in live_analyses] == [False] * 3

        ledger = s.db.fetch_all(
            "select shadow, count(*) as n from public.llm_calls group by shadow order by shadow"
        )
        assert ledger == [{"shadow": False, "n": 3}, {"shadow": True, "n": 3}]
        assert s.metrics.counts[MetricName.SHADOW_ANALYSES.value] == 3
        # Both workflows ended at their enter_trade (the shadow one by what live would do).
        assert s.metrics.counts[MetricName.WORKFLOWS_STOPPED.value] == 2

        # The live position is managed and applied at the next candle; the shadow user's
        # (platform-opened) position is managed too, and left exactly as it was.
        shadow_position = f.position(
            s.db, f.trader(s.db, shadow_user, interval="1m"), stop_loss="49000", take_profit="52000"
        )
        reg = s.db.call("register_position_management", position_id=shadow_position, check_gate=True)
        assert f.workflow(s.db, reg["workflow_id"])["shadow"] is True
        live_position = positions[0]["id"]
        adjust = {"action": "adjust_sl", "params": {"stop_loss": "49500"}, "confidence": 0.7}
        s.llm.queue_management(live_position, adjust)
        s.llm.queue_management(shadow_position, adjust)
        raw_before = s.db.fetch_one(
            "select p::text as raw from public.positions p where id = %(id)s", {"id": shadow_position}
        )
        s.close_candle(c)
        assert str(_row(s, "positions", live_position)["stop_loss"]) == "49500"
        raw_after = s.db.fetch_one(
            "select p::text as raw from public.positions p where id = %(id)s", {"id": shadow_position}
        )
        assert raw_after == raw_before
        decisions = s.db.fetch_all(
            "select position_id, action, status, shadow from public.management_decisions order by shadow"
        )
        assert [(d["position_id"], d["action"], d["status"], d["shadow"]) for d in decisions] == [
            (live_position, "adjust_sl", "applied", False),
            (shadow_position, "adjust_sl", "applied", True),
        ]
        assert s.metrics.counts[MetricName.SHADOW_ANALYSES.value] == 4


def test_a_shadow_users_initial_analysis_through_the_worker_starts_a_shadow_workflow_only(
    db_url: str,
) -> None:
    with running_stack(db_url) as s:
        _, shadow_user = _cohorts(s)
        trader = f.trader(s.db, shadow_user, interval="1m")
        waiting, entering = f.signal(s.db, trader), f.signal(s.db, trader)
        s.llm.queue_setup(waiting, "wait")
        s.llm.queue_setup(entering, {"decision": "enter_trade", "confidence": 0.9, "trade_plan": PLAN})
        queue = wiring.container().queue
        assert queue is not None
        queue.send_jobs(
            [AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=x) for x in (waiting, entering)]
        )
        s.runner.run_until_idle()

        assert [_row(s, "signals", x)["status"] for x in (waiting, entering)] == ["new", "new"]
        assert s.db.fetch_all("select id from public.positions") == []
        workflows = s.db.fetch_all("select signal_id, shadow, is_active from public.workflow_schedules")
        assert workflows == [{"signal_id": waiting, "shadow": True, "is_active": True}]
        assert s.metrics.counts[MetricName.WORKFLOWS_STARTED.value] == 1  # the shadow workflow
        assert s.metrics.counts[MetricName.SHADOW_ANALYSES.value] == 2
        analysed = s.db.fetch_all("select shadow from public.signal_analyses where analysis_type = 'initial'")
        assert analysed == [{"shadow": True}, {"shadow": True}]

        s.llm.queue_setup(waiting, "wait")
        s.close_candle(candle())  # and it is analysed at the next candle, still not applied
        assert s.db.fetch_one(
            "select count(*) as n from public.signal_analyses where signal_id = %(s)s and shadow",
            {"s": waiting},
        ) == {"n": 2}
        assert _row(s, "signals", waiting)["status"] == "new"


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_shadow_percent_through_the_cli_and_shown_apart_in_rollout_show_and_metrics(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_stack(db_url) as s:
        users = [f.user(s.db) for _ in range(40)]
        for u in users:
            f.trader(s.db, u)
        before = _cli_json(capsys, "rollout", "show", "--database-url", db_url)
        assert (before["shadow_percent"], before["users_shadow"]) == (0, 0)

        out = _cli_json(
            capsys, "rollout", "set", "--database-url", db_url, "--percent", "0", "--shadow-percent", "100"
        )
        assert (out["percent"], out["shadow_percent"]) == (0, 100)
        assert (out["users_admitted"], out["users_shadow"], out["traders_shadow"]) == (0, 40, 40)
        assert "shadow_percent" in out["changed"]

        assert (
            main(["rollout", "set", "--database-url", db_url, "--percent", "50", "--shadow-percent", "50"])
            == 0
        )
        text = capsys.readouterr().out
        assert "shadow_percent" in text and "users_shadow" in text
        shown = _cli_json(capsys, "rollout", "show", "--database-url", db_url)
        assert shown["users_admitted"] + shown["users_shadow"] == 40
        assert 0 < shown["users_shadow"] < 40

        with pytest.raises(SystemExit) as refused:
            main(["rollout", "set", "--database-url", db_url, "--shadow-percent", "101"])
        assert refused.value.code == 2 and "--shadow-percent" in capsys.readouterr().err
        assert _cli_json(capsys, "rollout", "show", "--database-url", db_url)["shadow_percent"] == 50

        # One shadow and one live analysis: `cmon metrics` splits them, tokens too.
        live_user = next(u for u in users if not s.db.call("rollout_shadow", user_id=u))
        shadow_user = next(u for u in users if s.db.call("rollout_shadow", user_id=u))
        s.llm.configure(prompt_tokens=900, completion_tokens=100)
        _wait_signal(s, live_user)
        _wait_signal(s, shadow_user)
        position = f.position(
            s.db, f.trader(s.db, shadow_user, interval="1m"), stop_loss="49000", take_profit="52000"
        )
        s.db.call("register_position_management", position_id=position, check_gate=True)
        s.close_candle(candle())
        metrics = _cli_json(capsys, "metrics", "--database-url", db_url)
        # live: the two platform-written initial analyses and the live user's candle analysis;
        # shadow: the shadow signal's analysis and the shadow position's decision
        assert (metrics["analyses_live"], metrics["analyses_shadow"]) == (3, 2)
        assert (metrics["decisions_live"], metrics["decisions_shadow"]) == (0, 1)
        assert (metrics["tokens_live"], metrics["tokens_shadow"]) == (1000, 2000)
        assert metrics["tokens"] == 3000
        assert main(["metrics", "--database-url", db_url]) == 0
        assert "analyses_shadow" in capsys.readouterr().out
