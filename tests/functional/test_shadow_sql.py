"""The shadow cohort at the SQL level: a shadow workflow's answers are recorded (marked
shadow, tokens in the ledger) and nothing is applied: no signal changes status, no
position is opened, changed or closed. The cohort itself over thousands of users."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from functions.adapters.postgres import Database
from tests.support import factories as f

T0 = datetime(2025, 10, 25, 10, 29, 59, 999000, tzinfo=UTC)
PLAN = {"side": "long", "entry": "50000", "stop_loss": "49000", "take_profit": "52000"}


def gate(db: Database, **changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = db.call("rollout_update", changes=changes, actor="test")
    return result


def everyone_shadow(db: Database) -> None:
    """No live users, every user in the shadow cohort."""
    gate(db, percent=0, shadow_percent=100, tiers=None)


def row(db: Database, table: str, id_: Any) -> dict[str, Any]:
    found = db.fetch_one(f"select * from public.{table} where id = %(id)s", {"id": id_})
    assert found is not None
    return found


def shadow_setup(db: Database, max_reanalyses: int = 5) -> tuple[uuid.UUID, uuid.UUID]:
    trader = f.trader(db)
    signal = f.signal(db, trader)
    out = db.call(
        "register_setup_monitoring", analysis_id=f.analysis(db, signal), max_reanalyses=max_reanalyses
    )
    assert out["action"] == "registered", out
    return uuid.UUID(str(out["workflow_id"])), signal


def analyse(db: Database, wf: Any, candle: datetime, decision: str, **extra: Any) -> dict[str, Any]:
    db.call("claim_candle", workflow_id=wf, candle_time=candle, lease_seconds=300)
    out: dict[str, Any] = db.call(
        "record_setup_analysis",
        workflow_id=wf,
        candle_time=candle,
        decision=decision,
        trade_plan=PLAN if decision == "enter_trade" else None,
        price=Decimal("50000"),
        total_tokens=400,
        **extra,
    )
    return out


# -- registration -------------------------------------------------------------------------------


def test_a_shadow_users_registration_is_monitored_marked_and_leaves_the_signal_new(db: Database) -> None:
    everyone_shadow(db)
    wf, signal = shadow_setup(db)
    assert f.workflow(db, wf)["shadow"] is True and f.workflow(db, wf)["is_active"] is True
    assert row(db, "signals", signal)["status"] == "new"  # not new -> monitoring

    gate(db, percent=100, shadow_percent=0)
    live_wf, live_signal = shadow_setup(db)
    assert f.workflow(db, live_wf)["shadow"] is False
    assert row(db, "signals", live_signal)["status"] == "monitoring"


def test_a_user_in_neither_cohort_is_not_registered(db: Database) -> None:
    gate(db, percent=0, shadow_percent=0)
    trader = f.trader(db)
    signal = f.signal(db, trader)
    out = db.call("register_setup_monitoring", analysis_id=f.analysis(db, signal), max_reanalyses=5)
    assert out == {"action": "ignored", "reason": "rollout_gate"}


# -- setup monitoring ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "would_apply", "stopped_reason"),
    [("enter_trade", "entered", "entered"), ("bad_setup", "bad_setup", "bad_setup")],
)
def test_a_shadow_setup_decision_changes_no_signal_and_opens_no_position(
    db: Database, decision: str, would_apply: str, stopped_reason: str
) -> None:
    everyone_shadow(db)
    wf, signal = shadow_setup(db)
    signal_before = row(db, "signals", signal)
    out = analyse(db, wf, T0, decision)
    assert (out["outcome"], out["would_apply"], out["shadow"]) == ("shadow", would_apply, True)
    assert "position_id" not in out
    assert row(db, "signals", signal) == signal_before
    assert db.fetch_all("select id from public.positions") == []
    workflow = f.workflow(db, wf)
    assert (workflow["is_active"], workflow["stopped_reason"]) == (False, stopped_reason)
    assert workflow["last_completed_candle_time"] == T0
    analyses = db.fetch_all(
        "select decision, shadow from public.signal_analyses where workflow_id = %(w)s", {"w": wf}
    )
    assert analyses == [{"decision": decision, "shadow": True}]
    ledger = db.fetch_all("select shadow, total_tokens, outcome from public.llm_calls")
    assert ledger == [{"shadow": True, "total_tokens": 400, "outcome": "ok"}]


def test_a_shadow_wait_counts_and_at_max_stops_without_expiring_the_signal(db: Database) -> None:
    everyone_shadow(db)
    wf, signal = shadow_setup(db, max_reanalyses=2)
    signal_before = row(db, "signals", signal)
    first = analyse(db, wf, T0, "wait")
    assert (first["outcome"], first["would_apply"], first["reanalysis_count"]) == ("shadow", "continued", 1)
    assert f.workflow(db, wf)["is_active"] is True
    second = analyse(db, wf, T0 + timedelta(minutes=1), "wait")
    assert (second["outcome"], second["would_apply"], second["reanalysis_count"]) == ("shadow", "expired", 2)
    assert row(db, "signals", signal) == signal_before  # still new, never expired
    workflow = f.workflow(db, wf)
    assert (workflow["is_active"], workflow["stopped_reason"], workflow["reanalysis_count"]) == (
        False,
        "max_reanalyses",
        2,
    )


def test_a_live_enter_trade_beside_a_shadow_one_is_applied_and_its_position_is_live(db: Database) -> None:
    everyone_shadow(db)
    shadow_wf, shadow_signal = shadow_setup(db)
    gate(db, percent=100, shadow_percent=0)
    live_wf, live_signal = shadow_setup(db)
    # The gate moves the live user into the shadow cohort: the position their live workflow
    # opens is still live (a workflow keeps its cohort).
    everyone_shadow(db)
    assert analyse(db, shadow_wf, T0, "enter_trade")["outcome"] == "shadow"
    live = analyse(db, live_wf, T0, "enter_trade")
    assert live["outcome"] == "entered" and "shadow" not in live
    assert row(db, "signals", live_signal)["status"] == "entered"
    assert row(db, "signals", shadow_signal)["status"] == "new"
    assert [r["signal_id"] for r in db.fetch_all("select signal_id from public.positions")] == [live_signal]
    position_wf = f.workflow(db, live["position_workflow_id"])
    assert position_wf["shadow"] is False


def test_a_shadow_initial_analysis_applies_nothing_and_a_shadow_wait_registers_a_shadow_workflow(
    db: Database,
) -> None:
    everyone_shadow(db)
    trader = f.trader(db)
    outcomes = {}
    for decision in ("enter_trade", "bad_setup", "wait"):
        signal = f.signal(db, trader)
        out = db.call(
            "record_initial_analysis", signal_id=signal, decision=decision, trade_plan=PLAN, total_tokens=300
        )
        outcomes[decision] = out
        assert (out["outcome"], out["shadow"]) == ("shadow", True), out
        assert row(db, "signals", signal)["status"] == "new"
    assert [o["would_apply"] for o in outcomes.values()] == ["entered", "bad_setup", "monitoring"]
    assert db.fetch_all("select id from public.positions") == []
    assert f.workflow(db, outcomes["wait"]["workflow_id"])["shadow"] is True
    assert db.fetch_one(
        "select count(*) filter (where shadow) as shadow, count(*) as n from public.signal_analyses"
    ) == {"shadow": 3, "n": 3}
    assert db.fetch_one(
        "select count(*) filter (where shadow) as shadow, sum(total_tokens) as tokens from public.llm_calls"
    ) == {"shadow": 3, "tokens": 900}


# -- position management ------------------------------------------------------------------------

ACTIONS: dict[str, dict[str, Any]] = {
    "adjust_sl": {"new_stop_loss": Decimal("49500")},
    "adjust_tp": {"new_take_profit": Decimal("53000")},
    "reduce": {"reduce_fraction": Decimal("0.5")},
    "close": {"exit_price": Decimal("50500")},
}


def manage(db: Database, wf: Any, action: str, candle: datetime = T0) -> dict[str, Any]:
    db.call("claim_candle", workflow_id=wf, candle_time=candle, lease_seconds=300)
    out: dict[str, Any] = db.call(
        "record_management_decision",
        workflow_id=wf,
        candle_time=candle,
        action=action,
        params={},
        verdict="apply",
        rejection_reason=None,
        price=Decimal("50500"),
        expected_version=0,
        total_tokens=250,
        **ACTIONS[action],
    )
    return out


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_shadow_management_decision_leaves_the_position_row_byte_identical(
    db: Database, action: str
) -> None:
    everyone_shadow(db)
    trader = f.trader(db)
    position = f.position(db, trader, stop_loss="49000", take_profit="52000")
    wf = db.call("register_position_management", position_id=position, check_gate=True)["workflow_id"]
    assert f.workflow(db, wf)["shadow"] is True
    before = db.fetch_one("select p::text as raw from public.positions p where id = %(id)s", {"id": position})
    out = manage(db, wf, action)
    assert (out["outcome"], out["would_apply"], out["shadow"]) == ("shadow", "applied", True)
    after = db.fetch_one("select p::text as raw from public.positions p where id = %(id)s", {"id": position})
    assert after == before
    decisions = db.fetch_all(
        "select action, status, shadow, total_tokens from public.management_decisions"
        " where workflow_id = %(w)s",
        {"w": wf},
    )
    assert decisions == [{"action": action, "status": "applied", "shadow": True, "total_tokens": 250}]
    assert db.fetch_all("select shadow, total_tokens from public.llm_calls") == [
        {"shadow": True, "total_tokens": 250}
    ]
    assert f.workflow(db, wf)["is_active"] is (action != "close")
    assert out["workflow_stopped"] is (action == "close")


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_live_management_decision_is_still_applied(db: Database, action: str) -> None:
    gate(db, percent=100, shadow_percent=0)
    trader = f.trader(db)
    position = f.position(db, trader, stop_loss="49000", take_profit="52000")
    wf = db.call("register_position_management", position_id=position, check_gate=True)["workflow_id"]
    before = row(db, "positions", position)
    out = manage(db, wf, action)
    assert out["outcome"] == "applied" and "shadow" not in out
    after = row(db, "positions", position)
    assert after["version"] == before["version"] + 1
    assert db.fetch_one("select shadow from public.management_decisions") == {"shadow": False}
    assert db.fetch_one("select shadow from public.llm_calls") == {"shadow": False}


# -- the cohort ---------------------------------------------------------------------------------

N_USERS = 3000


def populate(db: Database, n: int = N_USERS, seed: int = 16) -> dict[str, str]:
    rng = random.Random(seed)
    tiers = ["free", "pro", "elite"]
    users = {str(uuid.UUID(int=rng.getrandbits(128), version=4)): tiers[i % 3] for i in range(n)}
    with db.transaction() as conn:
        conn.execute(
            "insert into public.user_profiles (id, subscription_tier)"
            " select * from unnest(%(ids)s::uuid[], %(tiers)s::text[])",
            {"ids": list(users), "tiers": list(users.values())},
        )
        conn.execute("insert into public.traders (user_id) select id from public.user_profiles")
    return users


def cohorts(db: Database) -> tuple[set[str], set[str]]:
    rows = db.fetch_all(
        "select id, public.rollout_shadow(id) as shadow, public.monitoring_allowed(id) as monitored"
        " from public.user_profiles"
    )
    shadow = {str(r["id"]) for r in rows if r["shadow"]}
    monitored = {str(r["id"]) for r in rows if r["monitored"]}
    return monitored - shadow, shadow


def test_the_shadow_share_is_its_percent_disjoint_from_live_and_raising_live_drops_no_one(
    db: Database,
) -> None:
    users = populate(db)
    previous_live: set[str] = set()
    previous_monitored: set[str] = set()
    for percent, shadow_percent in ((0, 10), (10, 10), (25, 25), (50, 10)):
        result = gate(db, percent=percent, shadow_percent=shadow_percent, tiers=None)
        live, shadow = cohorts(db)
        assert not live & shadow
        share = 100 * len(shadow) / len(users)
        assert abs(share - shadow_percent) <= 3, (percent, shadow_percent, share)
        assert abs(100 * len(live) / len(users) - percent) <= 3
        assert previous_live <= live, "raising the live percentage dropped a live user"
        assert previous_monitored <= live | shadow, "raising the live percentage dropped a monitored user"
        assert result["users_shadow"] == len(shadow) == result["traders_shadow"]
        assert result["users_admitted"] == len(live)
        previous_live, previous_monitored = live, live | shadow


def test_the_shadow_cohort_honours_the_tier_filter_deny_list_and_switch(db: Database) -> None:
    users = populate(db, n=1500)
    gate(db, percent=0, shadow_percent=50, tiers=["elite"])
    _, shadow = cohorts(db)
    assert shadow and all(users[u] == "elite" for u in shadow)
    denied = sorted(shadow)[0]
    gate(db, deny_user_ids=[denied])
    assert cohorts(db)[1] == shadow - {denied}
    allowed = sorted(shadow)[1]
    gate(db, allow_user_ids=[allowed])  # live beats shadow
    live, now_shadow = cohorts(db)
    assert allowed in live and allowed not in now_shadow
    gate(db, enabled=False)
    assert cohorts(db) == (set(), set())


def test_shadow_percent_is_checked(db: Database) -> None:
    with pytest.raises(Exception, match="shadow_percent"):
        gate(db, shadow_percent=101)


def test_a_rejected_shadow_decision_is_recorded_as_shadow_and_says_so(db: Database) -> None:
    everyone_shadow(db)
    trader = f.trader(db)
    position = f.position(db, trader, stop_loss="49000", take_profit="52000")
    wf = db.call("register_position_management", position_id=position, check_gate=True)["workflow_id"]
    db.call("claim_candle", workflow_id=wf, candle_time=T0, lease_seconds=300)
    out = db.call(
        "record_management_decision",
        workflow_id=wf,
        candle_time=T0,
        action="adjust_sl",
        params={},
        verdict="apply",
        rejection_reason=None,
        price=Decimal("50500"),
        expected_version=0,
        new_stop_loss=Decimal("51000"),  # above the price: on the wrong side for a long
        total_tokens=250,
    )
    assert (out["outcome"], out["reason"], out["shadow"]) == (
        "rejected",
        "stop_loss_on_wrong_side_of_price",
        True,
    )
    assert db.fetch_one("select status, shadow from public.management_decisions") == {
        "status": "rejected",
        "shadow": True,
    }
