"""Operator actions on a real Postgres, through the real `cmon` entry point: the recorded
rollback and its exact undo, resume (service role and the signed-in owner over RPC), and
the rollout gate proven over thousands of generated users."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import psycopg
import pytest

from functions.adapters.postgres import Database
from functions.cli import main
from functions.core.errors import DatabaseError, NotFound
from tests.support import factories as f

# -- helpers ----------------------------------------------------------------------------------


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str, status: int = 0) -> Any:
    assert main([*argv, "--json"]) == status
    return json.loads(capsys.readouterr().out)


def cli_text(capsys: pytest.CaptureFixture[str], *argv: str, status: int = 0) -> tuple[str, str]:
    assert main(list(argv)) == status
    out = capsys.readouterr()
    return out.out, out.err


def active(db: Database) -> set[str]:
    return {str(r["id"]) for r in db.fetch_all("select id from public.workflow_schedules where is_active")}


def auto_on(db: Database) -> set[str]:
    return {str(r["id"]) for r in db.fetch_all("select id from public.traders where auto_analyze_signals")}


def gate(db: Database) -> dict[str, Any]:
    row = db.fetch_one(
        "select enabled, percent, tiers, allow_user_ids, deny_user_ids from public.rollout_settings"
    )
    assert row is not None
    return row


def setup_workflow(db: Database, trader: uuid.UUID) -> tuple[str, uuid.UUID]:
    signal = f.signal(db, trader)
    out = db.call("register_setup_monitoring", analysis_id=f.analysis(db, signal), max_reanalyses=5)
    assert out["action"] == "registered", out
    return str(out["workflow_id"]), signal


def position_workflow(db: Database, trader: uuid.UUID) -> tuple[str, uuid.UUID]:
    position = f.position(db, trader)
    out = db.call("register_position_management", position_id=position, check_gate=True)
    assert out["action"] == "registered", out
    return str(out["workflow_id"]), position


def snapshot(db: Database) -> dict[str, Any]:
    """Everything an undo could touch, to prove that a second one touches nothing."""
    return {
        "workflows": db.fetch_all(
            "select id, is_active, stopped_reason, updated_at from public.workflow_schedules order by id"
        ),
        "traders": db.fetch_all("select id, auto_analyze_signals from public.traders order by id"),
        "gate": db.fetch_one("select * from public.rollout_settings"),
        "actions": db.fetch_one("select count(*) as n from public.operator_actions"),
    }


# -- rollback and undo --------------------------------------------------------------------------


def test_rollback_records_what_it_changed_and_undo_restores_exactly_that(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = f.user(db, "elite")
    db.call(
        "rollout_update",
        changes={"percent": 25, "tiers": ["elite"], "allow_user_ids": [str(canary)]},
        actor="test",
    )
    elite_on = f.trader(db, canary, auto_analyze=True)
    elite_off = f.trader(db, f.user(db, "elite"), auto_analyze=False)  # was off: must stay off
    pro_on = f.trader(db, f.user(db, "pro"), auto_analyze=True)  # not elite: never touched
    waiting, _ = setup_workflow(db, elite_on)
    managed, _ = position_workflow(db, elite_on)
    finished, finished_signal = setup_workflow(db, elite_on)
    closing, closing_position = position_workflow(db, elite_on)
    disabled, _ = setup_workflow(db, elite_on)
    db.call("stop_workflow", workflow_id=disabled, reason="auto_disabled")  # stopped before: stays so
    gate_before = gate(db)

    out = cli_json(capsys, "rollback", "--database-url", db_url, "--yes", "--reason", "bad prompts")
    rollback_id = out["rollback_id"]
    assert (out["workflows_stopped"], out["traders_disabled"], out["rollout_enabled"]) == (4, 1, False)
    assert active(db) == set() and auto_on(db) == {str(pro_on)}
    assert gate(db)["enabled"] is False
    recorded = db.fetch_one("select * from public.rollbacks where id = %(id)s", {"id": rollback_id})
    assert recorded is not None
    assert {str(w) for w in recorded["workflow_ids"]} == {waiting, managed, finished, closing}
    assert [str(t) for t in recorded["trader_ids"]] == [str(elite_on)]
    assert (recorded["actor"].startswith("cli:"), recorded["reason"], recorded["tiers"]) == (
        True,
        "bad prompts",
        ["elite"],
    )
    assert recorded["previous_gate"]["percent"] == 25 and recorded["undone_at"] is None

    # Meanwhile one signal finishes and one position closes: those are not restored.
    db.fetch_one(
        "update public.signals set status = 'expired' where id = %(s)s returning id", {"s": finished_signal}
    )
    db.fetch_one(
        "update public.positions set status = 'closed', closed_at = now() where id = %(p)s returning id",
        {"p": closing_position},
    )

    undo = cli_json(capsys, "rollback", "undo", rollback_id, "--database-url", db_url, "--yes")
    assert undo["action"] == "undone"
    assert (undo["traders_enabled"], undo["workflows_restored"]) == (1, 2)
    assert set(undo["restored_workflow_ids"]) == {waiting, managed}
    assert sorted((w["workflow_id"], w["reason"]) for w in undo["workflows_not_restored"]) == sorted(
        [(finished, "signal_expired"), (closing, "position_closed")]
    )
    assert active(db) == {waiting, managed}
    assert auto_on(db) == {str(elite_on), str(pro_on)}  # elite_off stays off
    assert f.workflow(db, disabled)["stopped_reason"] == "auto_disabled"
    assert f.workflow(db, waiting)["stopped_reason"] is None
    assert gate(db) == gate_before
    assert str(elite_off) not in auto_on(db)

    # A second undo changes nothing and says so.
    before = snapshot(db)
    again = cli_json(capsys, "rollback", "undo", rollback_id, "--database-url", db_url, "--yes")
    assert again["action"] == "already_undone"
    assert (again["traders_enabled"], again["workflows_restored"]) == (0, 0)
    assert snapshot(db) == before
    text, _ = cli_text(capsys, "rollback", "undo", rollback_id, "--database-url", db_url, "--yes")
    assert "already undone" in text and "nothing changed" in text

    listed = cli_json(capsys, "rollback", "list", "--database-url", db_url)
    assert [(r["id"], r["undone"], r["workflows_stopped"]) for r in listed] == [(rollback_id, True, 4)]
    text, _ = cli_text(capsys, "rollback", "list", "--database-url", db_url)
    assert rollback_id in text and "True" in text
    actions = db.fetch_all(
        "select action, actor, rows_touched from public.operator_actions order by created_at"
    )
    assert [a["action"] for a in actions] == ["rollout_update", "rollback", "rollback_undo"]
    assert [a["rows_touched"] for a in actions[1:]] == [1 + 1 + 4, 1 + 1 + 2]


def test_rollback_human_output_names_the_id_and_how_to_undo(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    trader = f.trader(db, f.user(db, "elite"), auto_analyze=True)
    setup_workflow(db, trader)
    assert main(["rollback", "--database-url", db_url]) == 2  # no terminal to confirm on: refused
    assert "--yes" in capsys.readouterr().err
    assert len(active(db)) == 1
    text, _ = cli_text(capsys, "rollback", "--database-url", db_url, "--yes")
    row = db.fetch_one("select id from public.rollbacks")
    assert row is not None
    assert f"rollback {row['id']}: 1 workflow(s) stopped, 1 trader(s)" in text
    assert f"cmon rollback undo {row['id']} --yes" in text
    undo_text, _ = cli_text(capsys, "rollback", "undo", str(row["id"]), "--database-url", db_url, "--yes")
    assert "1 workflow(s) active again" in undo_text and "gate restored (enabled=True" in undo_text


def test_undo_of_an_unknown_or_malformed_id_is_a_clear_error_and_writes_nothing(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(db)
    unknown = str(uuid.uuid4())
    assert main(["rollback", "undo", unknown, "--database-url", db_url, "--yes"]) == 1
    assert f"rollback {unknown} not found" in capsys.readouterr().err
    assert main(["rollback", "undo", "not-an-id", "--database-url", db_url, "--yes"]) == 1
    assert "rollback_id: 'not-an-id' is not a UUID" in capsys.readouterr().err
    assert snapshot(db) == before


def test_after_a_rollback_reopening_the_gate_and_reconciling_restores_nothing(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runbook says so: the reconciler leaves an entity that has a workflow row alone,
    so only `cmon rollback undo` (or `cmon workflows resume`) brings workflows back."""
    trader = f.trader(db, f.user(db, "elite"), auto_analyze=True)
    setup_workflow(db, trader)
    position_workflow(db, trader)
    rollback_id = cli_json(capsys, "rollback", "--database-url", db_url, "--yes")["rollback_id"]
    cli_json(capsys, "rollout", "set", "--database-url", db_url, "--enable")
    out = db.call("reconcile_workflows", max_reanalyses=5)
    assert (out["registered_setup"], out["registered_positions"], out["active_setup"]) == ([], [], 0)
    assert active(db) == set()
    assert (
        cli_json(capsys, "rollback", "undo", rollback_id, "--database-url", db_url, "--yes")[
            "workflows_restored"
        ]
        == 2
    )
    assert len(active(db)) == 2


def test_infra_rollback_sql_calls_the_recording_function(db: Database, db_url: str) -> None:
    from tests.infra._cfn import ROOT

    trader = f.trader(db, f.user(db, "elite"), auto_analyze=True)
    wf, _ = setup_workflow(db, trader)
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute((ROOT / "infra" / "rollback.sql").read_text()).fetchone()
    assert row is not None
    result = row[0]
    assert (result["workflows_stopped"], result["traders_disabled"]) == (1, 1)
    recorded = db.fetch_one("select actor, workflow_ids from public.rollbacks")
    assert recorded is not None
    assert recorded["actor"].startswith("sql:") and [str(w) for w in recorded["workflow_ids"]] == [wf]
    undone = db.call("undo_rollback", rollback_id=result["rollback_id"], actor="test")
    assert undone["restored_workflow_ids"] == [wf]


# -- resume ------------------------------------------------------------------------------------


def disable(db: Database, wf: str, errors: int = 3) -> None:
    for minute in range(errors):
        db.call(
            "record_workflow_failure",
            workflow_id=wf,
            candle_time=f"2025-10-25T10:{10 + minute}:59.999Z",
            error_kind="llm_unavailable",
            message="down",
            max_errors=errors,
        )
    row = f.workflow(db, wf)
    assert (row["is_active"], row["stopped_reason"], row["consecutive_errors"]) == (
        False,
        "auto_disabled",
        errors,
    )


def test_resume_an_auto_disabled_workflow_through_the_cli(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    trader = f.trader(db)
    wf, signal = setup_workflow(db, trader)
    disable(db, wf)
    # The webhook of a new wait for that signal says it is stopped, and why.
    late = db.fetch_one(
        "insert into public.signal_analyses (signal_id, decision, analysis_type, candle_time)"
        " values (%(s)s, 'wait', 'monitoring', '2025-10-25T10:20:59.999Z') returning id",
        {"s": signal},
    )
    assert late is not None
    again = db.call("register_setup_monitoring", analysis_id=late["id"], max_reanalyses=5)
    assert (again["action"], again["reason"], again["workflow_id"]) == (
        "already_stopped",
        "auto_disabled",
        wf,
    )

    out = cli_json(capsys, "workflows", "resume", wf, "--database-url", db_url)
    assert (out["action"], out["previous_reason"], out["workflow_id"]) == ("resumed", "auto_disabled", wf)
    row = f.workflow(db, wf)
    assert (row["is_active"], row["consecutive_errors"], row["stopped_reason"], row["stopped_at"]) == (
        True,
        0,
        None,
        None,
    )
    audit = db.fetch_one(
        "select actor, action, subject_id, before_state, after_state from public.operator_actions"
    )
    assert audit is not None
    assert (audit["action"], str(audit["subject_id"]), audit["before_state"]["consecutive_errors"]) == (
        "resume_workflow",
        wf,
        3,
    )
    text, _ = cli_text(capsys, "workflows", "resume", wf, "--database-url", db_url)
    assert "already active: nothing changed" in text
    assert db.fetch_one("select count(*) as n from public.operator_actions") == {"n": 1}


def test_resume_is_refused_when_the_signal_is_finished_or_the_position_closed(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    trader = f.trader(db)
    wf, signal = setup_workflow(db, trader)
    disable(db, wf)
    db.fetch_one("update public.signals set status = 'expired' where id = %(s)s returning id", {"s": signal})
    out = cli_json(capsys, "workflows", "resume", wf, "--database-url", db_url, status=1)
    assert (out["action"], out["reason"]) == ("refused", "signal_expired")
    pwf, position = position_workflow(db, trader)
    db.call("stop_position_management", position_id=position, reason="position_closed")
    db.fetch_one(
        "update public.positions set status = 'closed' where id = %(p)s returning id", {"p": position}
    )
    text, _ = cli_text(capsys, "workflows", "resume", pwf, "--database-url", db_url, status=1)
    assert f"refused: {pwf} cannot be resumed (position_closed)" in text
    assert not f.workflow(db, wf)["is_active"] and not f.workflow(db, pwf)["is_active"]
    assert db.fetch_one("select count(*) as n from public.operator_actions") == {"n": 0}
    assert main(["workflows", "resume", str(uuid.uuid4()), "--database-url", db_url]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["workflows", "resume", "nope", "--database-url", db_url]) == 1
    assert "not a UUID" in capsys.readouterr().err


def test_resume_my_workflow_over_rpc_only_for_its_signed_in_owner(db: Database, db_url: str) -> None:
    alice, bob = f.user(db, "elite"), f.user(db, "elite")
    wf, _ = setup_workflow(db, f.trader(db, alice))
    disable(db, wf)

    def as_user(conn: psycopg.Connection[Any], user: uuid.UUID) -> None:
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": str(user)}),))

    with psycopg.connect(db_url) as conn:
        as_user(conn, bob)  # someone else's workflow looks like none at all
        with pytest.raises(psycopg.errors.NoDataFound):
            conn.execute("select public.resume_my_workflow(%s)", (wf,))
        conn.rollback()
        as_user(conn, alice)  # the owner may not call the service role's function
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select public.resume_workflow(%s, 'me')", (wf,))
        conn.rollback()
        conn.execute("set local role anon")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select public.resume_my_workflow(%s)", (wf,))
        conn.rollback()
        assert not f.workflow(db, wf)["is_active"]

        db.call("rollout_update", changes={"enabled": False}, actor="test")  # the gate is closed
        as_user(conn, alice)
        refused = conn.execute("select public.resume_my_workflow(%s)", (wf,)).fetchone()
        assert refused is not None and (refused[0]["action"], refused[0]["reason"]) == (
            "refused",
            "rollout_gate",
        )
        conn.rollback()
        db.call("rollout_update", changes={"enabled": True}, actor="test")

        as_user(conn, alice)
        row = conn.execute("select public.resume_my_workflow(%s)", (wf,)).fetchone()
        conn.commit()
    assert row is not None and row[0]["action"] == "resumed"
    assert (f.workflow(db, wf)["is_active"], f.workflow(db, wf)["consecutive_errors"]) == (True, 0)
    audit = db.fetch_one("select actor from public.operator_actions where action = 'resume_workflow'")
    assert audit == {"actor": f"user:{alice}"}


def test_resume_function_names_an_unknown_workflow_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        db.call("resume_workflow", workflow_id=uuid.uuid4(), actor="test")


def test_a_stopped_position_workflow_answers_already_stopped(db: Database) -> None:
    wf, position = position_workflow(db, f.trader(db))
    db.call("stop_workflow", workflow_id=wf, reason="rollback")
    again = db.call("register_position_management", position_id=position, check_gate=True)
    assert (again["action"], again["reason"], again["workflow_id"]) == ("already_stopped", "rollback", wf)


# -- the rollout gate, proven ----------------------------------------------------------------------

N_USERS = 5000


def populate(db: Database, n: int = N_USERS, seed: int = 12) -> dict[str, str]:
    """n users with ids from a seeded generator (a reproducible sample), tiers mixed."""
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


def admitted(db: Database) -> set[str]:
    rows = db.fetch_all("select id from public.user_profiles where public.monitoring_allowed(id)")
    return {str(r["id"]) for r in rows}


def set_gate(db: Database, **changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = db.call("rollout_update", changes=changes, actor="test")
    return result


def test_percentages_admit_their_share_and_raising_never_drops_anyone(db: Database) -> None:
    users = populate(db)
    previous: set[str] = set()
    for percent in (10, 25, 50):
        result = set_gate(db, percent=percent, tiers=None)
        now_in = admitted(db)
        share = 100 * len(now_in) / len(users)
        assert abs(share - percent) <= 3, (percent, share)
        assert previous <= now_in, f"raising to {percent}% dropped {len(previous - now_in)} users"
        assert result["users_admitted"] == len(now_in) == result["traders_admitted"]
        previous = now_in
    set_gate(db, percent=0)
    assert admitted(db) == set()
    set_gate(db, percent=100)
    assert len(admitted(db)) == len(users)


def test_tier_filter_allow_list_and_deny_list_each_change_the_outcome(db: Database) -> None:
    users = populate(db, n=3000)
    set_gate(db, percent=50, tiers=None)
    everyone_at_50 = admitted(db)
    set_gate(db, tiers=["elite"])
    elite_at_50 = admitted(db)
    assert elite_at_50 == {u for u in everyone_at_50 if users[u] == "elite"}
    assert 0 < len(elite_at_50) < len(everyone_at_50)

    bucket = {
        str(r["id"]): r["b"]
        for r in db.fetch_all("select id, public.rollout_bucket(id) as b from public.user_profiles")
    }
    outside = next(u for u, t in users.items() if t == "pro" and bucket[u] >= 50)  # wrong tier, out of bucket
    inside = next(iter(sorted(elite_at_50)))
    set_gate(db, allow_user_ids=[outside])
    assert admitted(db) == elite_at_50 | {outside}
    set_gate(db, deny_user_ids=[inside, outside])  # deny beats allow
    assert admitted(db) == elite_at_50 - {inside}
    set_gate(db, enabled=False)
    assert admitted(db) == set()


def test_rollout_show_and_dry_run_report_the_counts_without_writing(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(db, n=1200)
    auto = db.fetch_one(
        "update public.traders set auto_analyze_signals = true"
        " where user_id in (select id from public.user_profiles where subscription_tier = 'elite')"
        " returning 1"
    )
    assert auto is not None
    shown = cli_json(capsys, "rollout", "show", "--database-url", db_url)
    assert (shown["enabled"], shown["percent"], shown["users_total"]) == (True, 100, 1200)
    assert shown["users_admitted"] == shown["traders_admitted"] == 1200
    text, _ = cli_text(capsys, "rollout", "show", "--database-url", db_url)
    assert "users_admitted" in text and "1200" in text

    before = snapshot(db)
    preview = cli_json(
        capsys, "rollout", "set", "--database-url", db_url, "--percent", "25", "--tiers", "elite", "--dry-run"
    )
    assert snapshot(db) == before  # nothing written, nothing audited
    assert (preview["dry_run"], preview["percent"], preview["tiers"]) == (True, 25, ["elite"])
    assert preview["changed"] == ["percent", "tiers"]
    text, _ = cli_text(
        capsys, "rollout", "set", "--database-url", db_url, "--percent", "25", "--tiers", "elite", "--dry-run"
    )
    assert "dry run: nothing written" in text and snapshot(db) == before

    applied = cli_json(
        capsys,
        "rollout",
        "set",
        "--database-url",
        db_url,
        "--percent",
        "25",
        "--tiers",
        "elite",
        "--reason",
        "stage 3",
    )
    now_in = admitted(db)
    assert applied["users_admitted"] == preview["users_admitted"] == len(now_in)
    assert applied["traders_auto_analyze_admitted"] == len(now_in)  # every admitted user is elite here
    assert 0 < len(now_in) < 1200 / 3
    audit = db.fetch_one(
        "select actor, reason, before_state, after_state, rows_touched from public.operator_actions"
    )
    assert audit is not None
    assert (audit["reason"], audit["before_state"]["percent"], audit["after_state"]["percent"]) == (
        "stage 3",
        100,
        25,
    )
    assert audit["actor"].startswith("cli:") and audit["rows_touched"] == 1
    assert cli_json(capsys, "rollout", "show", "--database-url", db_url)["users_admitted"] == len(now_in)


def test_rollout_update_is_generic_over_columns_and_refuses_unknown_ones(db: Database) -> None:
    with db.transaction() as conn:  # a column another branch adds later
        conn.execute("alter table public.rollout_settings add column future_knob bigint not null default 0")
    out = set_gate(db, future_knob=50_000)
    assert (out["before"]["future_knob"], out["after"]["future_knob"]) == (0, 50_000)
    assert out["changed"] == ["future_knob"]
    before = snapshot(db)
    for bad in ({"percnt": 5}, {"updated_by": "me"}, {"percent": 101}, {"enabled": None}):
        with pytest.raises(DatabaseError):
            set_gate(db, **bad)
    assert snapshot(db) == before


def test_rollout_set_with_nothing_or_a_bad_user_id_is_refused(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(db)
    assert main(["rollout", "set", "--database-url", db_url]) == 1
    assert "nothing to change" in capsys.readouterr().err
    assert main(["rollout", "set", "--database-url", db_url, "--allow", "bob"]) == 1
    assert "allow: 'bob' is not a UUID" in capsys.readouterr().err
    assert snapshot(db) == before
