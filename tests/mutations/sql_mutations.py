"""Hand-written mutations of the SQL functions: each breaks one guarantee of the README's
SQL table; the tests that pin it must then fail.

    .venv/bin/python -m tests.mutations.sql_mutations            # all, prints a table
    .venv/bin/python -m tests.mutations.sql_mutations claim       # those whose name matches

For each mutation the latest definition of the function (the last migration file that
creates it, so a later `create or replace` is what gets broken) is copied with one
snippet replaced (matched ignoring whitespace) into a scratch migrations folder, and
pytest runs the listed tests against a template database migrated from that folder
(`CMON_TEST_MIGRATIONS_DIR`, read by tests/conftest.py). Killed: pytest failed. A
mutation whose snippet is not found is reported `missing` (someone changed the
function: update the snippet) and counts as a failure of this check. Exit code 0 only
when every mutation is killed. Nothing in the repository is modified.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "supabase" / "migrations"

INV = "tests/functional/test_sql_invariants.py::test_"
G = "tests/functional/test_sql_guarantees.py::test_"
PROMISES = "tests/e2e/test_promises.py::test_"
SETUP_E2E = "tests/e2e/test_setup_monitoring.py::test_"
POSITION_E2E = "tests/e2e/test_position_management.py::test_"
CONCURRENCY = "tests/e2e/test_concurrency.py::test_"
SHADOW = "tests/functional/test_shadow_sql.py::test_"
CTX = "tests/functional/test_job_context.py::test_"
LEDGER = "tests/functional/test_ledger_sql.py::test_"


@dataclass(frozen=True)
class Mutation:
    """`old` (whitespace-insensitive) becomes `new` in the latest definition of `function`;
    `tests` are the pytest node ids that pin the guarantee `name`."""

    name: str
    function: str
    old: str
    new: str
    tests: tuple[str, ...]


NEVER = "if false then"
M = Mutation

MUTATIONS: tuple[Mutation, ...] = (
    # registration
    M("register: only a wait starts monitoring", "register_setup_monitoring",
      "if v_analysis.decision <> 'wait' then", NEVER, (G + "only_a_wait_analysis_starts_monitoring",)),
    M("register: only an open signal", "_register_setup",
      "if v_signal.status not in ('new', 'monitoring') then", NEVER,
      (G + "a_wait_on_a_finished_signal_starts_nothing",)),
    M("register: the rollout gate is checked", "_insert_workflow",
      "if p_check_gate and not public.monitoring_allowed(v_trader.user_id) then", NEVER,
      (INV + "rollout_gate_keeps_users_out_until_enabled",)),
    M("register: already_registered names the same workflow", "_insert_workflow",
      "'already_registered', 'workflow_id', v_id", "'already_registered', 'workflow_id', null",
      (INV + "double_registration_gives_one_workflow_even_concurrently",)),
    M("register: only an open position", "register_position_management",
      "if v_position.status <> 'open' then", NEVER, (G + "a_closed_position_starts_no_management",)),
    # claims
    M("claim: only an active workflow", "claim_candle",
      "if not v_wf.is_active then", NEVER, (G + "an_inactive_workflow_cannot_claim",)),
    M("claim: a finished signal stops its workflow", "claim_candle",
      "if v_status is null or v_status not in ('new', 'monitoring') then", NEVER,
      (G + "a_claim_for_a_finished_signal_stops_its_workflow",)),
    M("claim: a closed position stops its workflow", "claim_candle",
      "if v_status is distinct from 'open' then", NEVER,
      (INV + "claim_stops_a_workflow_whose_position_was_closed",)),
    M("claim: only a newer candle", "claim_candle",
      "p_candle_time > v_wf.last_candle_time", "p_candle_time >= v_wf.last_candle_time",
      (G + "a_fresh_claim_is_not_taken_over",)),
    M("claim: an older candle is refused", "claim_candle",
      "return jsonb_build_object('claimed', false, 'reason', 'older_candle');",
      "return jsonb_build_object('claimed', true, 'reason', 'claimed');",
      (INV + "older_candle_after_newer_is_refused",)),
    M("claim: concurrent claims serialise on the row lock", "claim_candle",
      "where id = p_workflow_id for update;", "where id = p_workflow_id;",
      (CONCURRENCY + "two_workers_on_the_same_job_make_one_analysis",)),
    M("claim: a live lease is not taken over, an expired one is", "claim_candle",
      "v_wf.claimed_at <", "v_wf.claimed_at >",
      (INV + "a_claim_whose_worker_died_can_be_taken_over_after_the_lease",)),
    M("claim: an initial analysis only for a new signal", "claim_initial_analysis",
      "if v_signal.status <> 'new' then", NEVER,
      (G + "the_initial_analysis_is_claimed_once_and_only_for_a_new_signal",)),
    # setup analyses
    M("setup: a second record of a candle applies nothing", "record_setup_analysis",
      "if v_analysis is null then", NEVER, (INV + "recording_the_same_candle_twice_applies_once",)),
    M("setup: wait stops at max_reanalyses", "record_setup_analysis",
      "v_wf.reanalysis_count >= v_wf.max_reanalyses", "v_wf.reanalysis_count > v_wf.max_reanalyses",
      (INV + "wait_until_max_reanalyses_expires_the_signal",)),
    M("setup: max_reanalyses expires the signal", "record_setup_analysis",
      "'max_reanalyses'); update public.signals set status = 'expired'",
      "'max_reanalyses'); update public.signals set status = status",
      (INV + "wait_until_max_reanalyses_expires_the_signal",)),
    M("setup: enter_trade opens the position", "record_setup_analysis",
      "v_opened := public._open_position_from_plan(v_wf.signal_id, coalesce(p_trade_plan, '{}'), p_price);",
      "v_opened := '{}';", (INV + "enter_trade_opens_the_position_and_registers_its_management",)),
    M("setup: enter_trade stops monitoring", "record_setup_analysis",
      "perform public.stop_workflow(v_wf.id, 'entered');", "null;",
      (G + "an_enter_trade_stops_monitoring_and_a_bad_setup_too",)),
    M("setup: bad_setup stops monitoring", "record_setup_analysis",
      "perform public.stop_workflow(v_wf.id, 'bad_setup');", "null;",
      (G + "an_enter_trade_stops_monitoring_and_a_bad_setup_too",)),
    M("setup: an answer for a superseded candle is not applied", "record_setup_analysis",
      "if v_wf.last_candle_time is distinct from p_candle_time then", NEVER,
      (INV + "a_setup_answer_for_a_superseded_candle_is_recorded_but_not_applied",)),
    M("setup: an answer for a signal no longer open is not applied", "record_setup_analysis",
      "if v_status is null or v_status not in ('new', 'monitoring') then", NEVER,
      (INV + "a_signal_cancelled_during_the_llm_call_is_left_cancelled",)),
    M("setup: a success resets the error counter", "record_setup_analysis",
      "consecutive_errors = 0", "consecutive_errors = consecutive_errors",
      (INV + "a_success_resets_the_error_counter",)),
    M("plan: stop and target must bracket the entry", "_open_position_from_plan",
      "(v_side = 'long' and (v_sl >= v_entry or v_tp <= v_entry))", "(false)",
      (INV + "a_trade_plan_that_does_not_bracket_its_entry_opens_nothing",)),
    M("plan: the opened position is registered for management", "_open_position_from_plan",
      "v_reg := public.register_position_management(v_position, false);", "v_reg := '{}';",
      (INV + "enter_trade_opens_the_position_and_registers_its_management",)),
    # initial analyses
    M("initial: a wait registers monitoring", "record_initial_analysis",
      "v_result := public._register_setup(p_signal_id, p_max_reanalyses);", "v_result := '{}';",
      (G + "an_initial_wait_registers_monitoring_in_the_same_call",)),
    M("initial: a signal cancelled meanwhile is not applied", "record_initial_analysis",
      "if v_signal.status <> 'new' then", NEVER,
      (G + "an_initial_answer_for_a_signal_cancelled_meanwhile_is_not_applied",)),
    M("initial: a transient failure releases the claim", "record_initial_failure",
      "if p_release_claim then", NEVER,
      (INV + "a_transient_initial_failure_lets_the_reconciler_queue_the_signal_again",)),
    M("initial: the reconciler skips traders without auto_analyze_signals",
      "signals_missing_initial_analysis", "and t.auto_analyze_signals", "and true",
      (PROMISES + "reconciler_queues_lost_initial_analyses_only_for_traders_with_auto_analyze",)),
    M("initial: the reconciler skips signals already claimed", "signals_missing_initial_analysis",
      "and s.initial_claimed_at is null", "and true",
      (INV + "a_transient_initial_failure_lets_the_reconciler_queue_the_signal_again",)),
    M("initial: the reconciler leaves young signals to their webhook", "signals_missing_initial_analysis",
      "make_interval(secs => p_min_age_seconds)", "make_interval(secs => 0)",
      (G + "the_reconciler_queues_lost_initial_analyses_between_one_minute_and_one_hour_old",)),
    M("initial: the reconciler gives up on signals over an hour old", "signals_missing_initial_analysis",
      "make_interval(secs => p_max_age_seconds)", "make_interval(secs => p_max_age_seconds * 1000)",
      (G + "the_reconciler_queues_lost_initial_analyses_between_one_minute_and_one_hour_old",)),
    M("initial: the reconciler only queues new signals", "signals_missing_initial_analysis",
      "where s.status = 'new'", "where true",
      (G + "the_reconciler_queues_lost_initial_analyses_between_one_minute_and_one_hour_old",)),
    # management decisions
    M("manage: a decision for a superseded candle is stale", "record_management_decision",
      "if v_wf.last_candle_time is distinct from p_candle_time then", NEVER,
      (INV + "a_management_decision_for_an_older_candle_is_rejected_as_stale",)),
    M("manage: only an open position", "record_management_decision",
      "elsif v_pos.status <> 'open' then", "elsif false then",
      (G + "a_decision_for_a_closed_position_is_rejected",)),
    M("manage: a position changed since read is not touched", "record_management_decision",
      "elsif v_pos.version is distinct from p_expected_version then", "elsif false then",
      (INV + "an_edit_made_elsewhere_invalidates_a_decision_computed_before_it",)),
    M("manage: a stop-loss stays on the losing side", "record_management_decision",
      "or v_sign * (p_price - p_new_stop_loss) <= 0) then", "or false) then",
      (INV + "the_database_refuses_a_stop_loss_above_a_longs_price",)),
    M("manage: a take-profit stays beyond the price", "record_management_decision",
      "or v_sign * (p_new_take_profit - p_price) <= 0) then", "or false) then",
      (G + "adjust_tp_beyond_the_price_applies_and_short_of_it_is_rejected",)),
    M("manage: a reduce fraction is below 1", "record_management_decision",
      "or p_reduce_fraction >= 1) then", "or p_reduce_fraction > 1) then",
      (G + "a_reduce_of_the_whole_position_is_rejected",)),
    M("manage: adjust_sl applies", "record_management_decision",
      "set stop_loss = p_new_stop_loss", "set stop_loss = stop_loss",
      (POSITION_E2E + "brief_2_2_hold_then_adjust_sl_then_closed_by_user_stops",)),
    M("manage: adjust_tp applies", "record_management_decision",
      "set take_profit = p_new_take_profit", "set take_profit = take_profit",
      (PROMISES + "adjust_tp_moves_the_take_profit_through_the_position_worker",)),
    M("manage: reduce books its PnL", "record_management_decision",
      "v_qty := v_pos.contracts * p_reduce_fraction;", "v_qty := 0;",
      (INV + "reduce_then_close_book_realised_pnl_and_stop_the_workflow",)),
    M("manage: close books the PnL", "record_management_decision",
      "v_pnl := v_sign * (v_exit - v_pos.entry_price) * v_pos.contracts;", "v_pnl := 0;",
      (INV + "reduce_then_close_book_realised_pnl_and_stop_the_workflow",)),
    M("manage: close stops the workflow", "record_management_decision",
      "perform public.stop_workflow(v_wf.id, 'position_closed');", "null;",
      (INV + "reduce_then_close_book_realised_pnl_and_stop_the_workflow",)),
    M("manage: a second decision for a candle applies nothing", "record_management_decision",
      "if v_decision is null then", NEVER, (G + "the_same_decision_twice_applies_once",)),
    M("manage: a success resets the error counter", "record_management_decision",
      "consecutive_errors = 0", "consecutive_errors = consecutive_errors",
      (G + "a_management_success_resets_the_error_counter",)),
    # failures
    M("failure: the maximum disables the workflow", "record_workflow_failure",
      "v_wf.consecutive_errors >= p_max_errors", "v_wf.consecutive_errors > p_max_errors",
      (INV + "five_failures_disable_the_workflow_and_notify_its_user_once",)),
    M("failure: its user is notified", "record_workflow_failure",
      "values (v_user, v_wf.id, 'workflow_disabled',", "values (v_user, v_wf.id, 'paused',",
      (INV + "five_failures_disable_the_workflow_and_notify_its_user_once",)),
    M("failure: errors are counted", "record_workflow_failure",
      "consecutive_errors = consecutive_errors + 1", "consecutive_errors = consecutive_errors",
      (INV + "five_failures_disable_the_workflow_and_notify_its_user_once",)),
    # stopping, fan-out, reconciler, gate
    M("stop: idempotent, the first reason stays", "stop_workflow",
      "if not v_active then", NEVER, (G + "stopping_twice_keeps_the_first_reason",)),
    M("fan-out: only active workflows", "workflows_for_candle",
      "where w.is_active and", "where true and",
      (G + "the_fan_out_query_skips_stopped_workflows_and_those_at_the_candle",)),
    M("fan-out: only workflows not yet at this candle", "workflows_for_candle",
      "(w.last_candle_time is null or w.last_candle_time < p_candle_time)", "true",
      (G + "the_fan_out_query_skips_stopped_workflows_and_those_at_the_candle",)),
    M("reconciler: registers a lost wait", "reconcile_workflows",
      "limit 1) = 'wait'", "limit 1) = 'none'",
      (INV + "reconciler_registers_what_webhooks_missed_and_stops_closed_ones",)),
    M("reconciler: registers a lost open position", "reconcile_workflows",
      "where p.status = 'open'", "where false", (G + "the_reconciler_registers_a_lost_open_position",)),
    M("reconciler: stops workflows whose entity closed", "reconcile_workflows",
      "where w.is_active and ((w.workflow_type", "where false and ((w.workflow_type",
      (INV + "reconciler_registers_what_webhooks_missed_and_stops_closed_ones",)),
    M("gate: the deny list wins", "rollout_admits",
      "and not coalesce(p_user_id = any (p_settings.deny_user_ids), true)", "and true",
      (G + "the_gate_keeps_other_tiers_and_denied_users_out",)),
    M("gate: the tiers filter", "rollout_admits",
      "coalesce(p_tier = any (p_settings.tiers), false)", "true",
      (G + "the_gate_keeps_other_tiers_and_denied_users_out",)),
    # the shadow cohort: recorded, never applied
    M("shadow: an enter_trade opens no position", "record_setup_analysis",
      "if v_wf.shadow then v_opened := '{}';", "if false then v_opened := '{}';",
      (SHADOW + "a_shadow_setup_decision_changes_no_signal_and_opens_no_position",)),
    M("shadow: a bad_setup leaves the signal as it is", "record_setup_analysis",
      "and not v_wf.shadow; v_result := jsonb_build_object('outcome', 'bad_setup'",
      "; v_result := jsonb_build_object('outcome', 'bad_setup'",
      (SHADOW + "a_shadow_setup_decision_changes_no_signal_and_opens_no_position",)),
    M("shadow: a management decision leaves the position untouched", "record_management_decision",
      "if v_wf.shadow then -- Recorded, not applied", "if false then -- Recorded, not applied",
      (SHADOW + "a_shadow_management_decision_leaves_the_position_row_byte_identical",)),
    M("shadow cohort: the buckets after the live ones", "rollout_shadow_admits",
      "< p_settings.percent + p_settings.shadow_percent", "< p_settings.shadow_percent",
      (SHADOW + "the_shadow_share_is_its_percent_disjoint_from_live_and_raising_live_drops_no_one",)),
    M("shadow cohort: never a live user", "rollout_shadow_admits",
      "and not public.rollout_admits(p_settings, p_user_id, p_tier)", "",
      (SHADOW + "the_shadow_share_is_its_percent_disjoint_from_live_and_raising_live_drops_no_one",)),
    M("shadow: registration marks the workflow", "_workflow_shadow_at_registration",
      "new.shadow := new.shadow or coalesce(", "new.shadow := new.shadow and coalesce(",
      (SHADOW + "a_shadow_users_registration_is_monitored_marked_and_leaves_the_signal_new",)),
    # a job's prompt context: one call, the bytes the old reads sent
    M("context: a number is its decimal text, not a JSON number", "_prompt_row",
      "then pg_catalog.to_json(p_row ->> a.attname::text)", "then (p_row -> a.attname::text)::json",
      (CTX + "the_position_prompt_is_byte_identical_to_the_old_reads",)),
    M("context: a timestamp's fraction only when it has microseconds", "_prompt_row",
      "to_char(ts.v, 'US') <> '000000'", "to_char(ts.v, 'US') >= '000000'",
      (CTX + "the_timestamps_read_as_python_wrote_them",)),
    M("context: a negative offset keeps its sign", "_prompt_row",
      "case when ts.off < 0 then '-' else '+' end", "'+'",
      (CTX + "the_setup_prompt_is_byte_identical_to_the_old_reads",)),
    M("context: the columns in table order", "_prompt_row",
      "order by coalesce(pg_catalog.array_position(p_columns, a.attname::text), a.attnum)",
      "order by a.attname", (CTX + "the_setup_prompt_is_byte_identical_to_the_old_reads",)),
    M("context: the newest analyses", "setup_job_context",
      "order by x.created_at desc, x.id desc", "order by x.created_at, x.id",
      (CTX + "the_setup_prompt_is_byte_identical_to_the_old_reads",)),
    M("context: analyses newest first, a tie broken by id", "setup_job_context",
      "order by a.created_at desc, a.id desc), '[]'::json)", "order by a.created_at desc, a.id), '[]'::json)",
      (CTX + "the_setup_prompt_is_byte_identical_to_the_old_reads",)),
    M("context: a monitoring job reads its workflow's signal", "setup_job_context",
      "case when p_workflow_id is not null then w.signal_id else p_signal_id end", "p_signal_id",
      (CTX + "the_setup_prompt_is_byte_identical_to_the_old_reads",)),
    M("context: an unknown workflow is not found", "setup_job_context",
      "if p_workflow_id is not null and not v_workflow_found then", NEVER,
      (CTX + "an_unknown_workflow_or_signal_is_not_found",)),
    M("context: the newest decisions", "position_job_context",
      "order by x.candle_time desc", "order by x.candle_time",
      (CTX + "the_position_prompt_is_byte_identical_to_the_old_reads",)),
    M("context: decisions newest first", "position_job_context",
      "order by d.candle_time desc), '[]'::json)", "order by d.candle_time), '[]'::json)",
      (CTX + "the_position_prompt_is_byte_identical_to_the_old_reads",)),
    M("context: only a position workflow has a position context", "position_job_context",
      "if v_context is null then", NEVER, (CTX + "an_unknown_workflow_or_signal_is_not_found",)),
    M("gate: a percentage, not on/off", "rollout_admits",
      "public.rollout_bucket(p_user_id) < p_settings.percent", "p_settings.percent > 0",
      (G + "the_gate_admits_a_percentage_of_users_by_their_stable_bucket",)),
    # the daily token cap
    M("cap: an uncapped claim never reads the ledger", "_token_cap_refusal",
      "v_budget jsonb;", "v_budget jsonb := public.user_token_budget(p_user_id);",
      (LEDGER + "an_uncapped_claim_never_reads_the_ledger",)),
    M("cap: a tier's own cap wins over the global one", "user_token_cap",
      "coalesce(nullif(r.daily_token_cap_by_tier ->> u.subscription_tier, '')::bigint, r.daily_token_cap)",
      "r.daily_token_cap", (LEDGER + "an_uncapped_claim_never_reads_the_ledger",)),
    M("cap: at the cap the claim is refused", "_token_cap_refusal",
      "if (v_budget ->> 'tokens_today')::bigint < (v_budget ->> 'cap')::bigint then", "if true then",
      (LEDGER + "the_cap_counts_the_users_tokens_of_the_current_utc_day",)),
)  # fmt: skip


def _loose(snippet: str) -> re.Pattern[str]:
    """The snippet with any run of whitespace matching any run (formatting may change)."""
    return re.compile(r"\s+".join(re.escape(part) for part in snippet.split()))


def _definitions(name: str, files: list[Path]) -> list[tuple[Path, int, int]]:
    """(file, start, end) of every `create [or replace] function public.<name>(` body."""
    head = re.compile(rf"create\s+(or\s+replace\s+)?function\s+public\.{re.escape(name)}\s*\(", re.I)
    found: list[tuple[Path, int, int]] = []
    for path in files:
        text = path.read_text()
        for match in head.finditer(text):
            body = re.compile(r"\bas\s+(\$[a-z_]*\$)", re.I).search(text, match.end())
            if body is None:
                continue
            close = text.find(body.group(1), body.end())
            found.append((path, match.start(), close + len(body.group(1))))
    return found


def apply(mutation: Mutation, source: Path, target: Path) -> bool:
    """Write the migrations into `target` with the mutation applied; False if not applicable."""
    files = sorted(source.glob("*.sql"))
    shutil.copytree(source, target, dirs_exist_ok=True)
    definitions = _definitions(mutation.function, files)
    if not definitions:
        return False
    path, start, end = definitions[-1]
    text = path.read_text()
    body = text[start:end]
    mutated, count = _loose(mutation.old).subn(mutation.new, body, count=1)
    if count != 1:
        return False
    (target / path.name).write_text(text[:start] + mutated + text[end:])
    return True


def run(mutation: Mutation, python: str, admin_url: str) -> tuple[str, float]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cmon-sqlmut-") as scratch:
        folder = Path(scratch) / "migrations"
        if not apply(mutation, MIGRATIONS, folder):
            return "missing", 0.0
        env = {**os.environ, "CMON_TEST_MIGRATIONS_DIR": str(folder), "TEST_DATABASE_URL": admin_url}
        command = [python, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider", *mutation.tests]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    verdict = "killed" if done.returncode == 1 else ("survived" if done.returncode == 0 else "error")
    return verdict, time.monotonic() - started


@contextmanager
def _server() -> Iterator[str]:
    """One Postgres for every run (`TEST_DATABASE_URL` if set, else an embedded one)."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    from functions.local.embedded_db import EmbeddedPostgres

    with EmbeddedPostgres() as server:
        yield server.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("match", nargs="?", default="", help="only mutations whose name contains this")
    parser.add_argument("--json", action="store_true", help="one JSON object per mutation")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.match.lower() in m.name.lower()]
    results: dict[str, int] = {}
    with _server() as admin_url:
        for mutation in chosen:
            verdict, seconds = run(mutation, sys.executable, admin_url)
            results[verdict] = results.get(verdict, 0) + 1
            if args.json:
                print(
                    json.dumps({"mutation": mutation.name, "function": mutation.function, "verdict": verdict})
                )
            else:
                print(f"{verdict:9} {seconds:6.1f}s  {mutation.function:34} {mutation.name}", flush=True)
    print(f"{results.get('killed', 0)}/{len(chosen)} killed " + json.dumps(results), flush=True)
    return 0 if results.get("killed", 0) == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
