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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "supabase" / "migrations"

SQL = "tests/functional/test_sql_invariants.py"
PROMISES = "tests/e2e/test_promises.py"
SETUP_E2E = "tests/e2e/test_setup_monitoring.py"
POSITION_E2E = "tests/e2e/test_position_management.py"
CONCURRENCY = "tests/e2e/test_concurrency.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    function: str
    old: str
    new: str
    tests: tuple[str, ...]


NEVER = "if false then"

MUTATIONS: tuple[Mutation, ...] = (
    # registration
    Mutation(
        "register: only a wait starts monitoring",
        "register_setup_monitoring",
        "if v_analysis.decision <> 'wait' then",
        NEVER,
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "register: only an open signal",
        "_register_setup",
        "if v_signal.status not in ('new', 'monitoring') then",
        NEVER,
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "register: the rollout gate is checked",
        "_insert_workflow",
        "if p_check_gate and not public.monitoring_allowed(v_trader.user_id) then",
        NEVER,
        (SQL,),
    ),
    Mutation(
        "register: already_registered names the same workflow",
        "_insert_workflow",
        "'already_registered', 'workflow_id', v_id",
        "'already_registered', 'workflow_id', null",
        (SQL,),
    ),
    Mutation(
        "register: only an open position",
        "register_position_management",
        "if v_position.status <> 'open' then",
        NEVER,
        (SQL, POSITION_E2E),
    ),
    # claim
    Mutation(
        "claim: only an active workflow",
        "claim_candle",
        "if not v_wf.is_active then",
        NEVER,
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "claim: a finished signal stops its workflow",
        "claim_candle",
        "if v_status is null or v_status not in ('new', 'monitoring') then",
        NEVER,
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "claim: a closed position stops its workflow",
        "claim_candle",
        "if v_status is distinct from 'open' then",
        NEVER,
        (SQL, POSITION_E2E),
    ),
    Mutation(
        "claim: only a newer candle",
        "claim_candle",
        "p_candle_time > v_wf.last_candle_time",
        "p_candle_time >= v_wf.last_candle_time",
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "claim: concurrent claims serialise on the row lock",
        "claim_candle",
        "where id = p_workflow_id for update;",
        "where id = p_workflow_id;",
        (CONCURRENCY, SQL),
    ),
    Mutation(
        "claim: a live lease is not taken over",
        "claim_candle",
        "v_wf.claimed_at <",
        "v_wf.claimed_at >",
        (SQL,),
    ),
    Mutation(
        "claim: an initial analysis is claimed once",
        "claim_initial_analysis",
        "if v_signal.status <> 'new' then",
        NEVER,
        (SQL, SETUP_E2E),
    ),
    # setup analyses
    Mutation(
        "setup: a second record of a candle applies nothing",
        "record_setup_analysis",
        "if v_analysis is null then",
        NEVER,
        (SQL,),
    ),
    Mutation(
        "setup: wait stops at max_reanalyses",
        "record_setup_analysis",
        "v_wf.reanalysis_count >= v_wf.max_reanalyses",
        "v_wf.reanalysis_count > v_wf.max_reanalyses",
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "setup: max_reanalyses expires the signal",
        "record_setup_analysis",
        "'max_reanalyses'); update public.signals set status = 'expired'",
        "'max_reanalyses'); update public.signals set status = status",
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "setup: enter_trade opens the position",
        "record_setup_analysis",
        "v_opened := public._open_position_from_plan(v_wf.signal_id, coalesce(p_trade_plan, '{}'), p_price);",
        "v_opened := '{}';",
        (SQL, POSITION_E2E),
    ),
    Mutation(
        "setup: enter_trade stops monitoring",
        "record_setup_analysis",
        "perform public.stop_workflow(v_wf.id, 'entered');",
        "null;",
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "setup: bad_setup stops monitoring",
        "record_setup_analysis",
        "perform public.stop_workflow(v_wf.id, 'bad_setup');",
        "null;",
        (SQL,),
    ),
    Mutation(
        "setup: an answer for a superseded candle is not applied",
        "record_setup_analysis",
        "if v_wf.last_candle_time is distinct from p_candle_time then",
        NEVER,
        (SQL,),
    ),
    Mutation(
        "setup: an answer for a signal no longer open is not applied",
        "record_setup_analysis",
        "if v_status is null or v_status not in ('new', 'monitoring') then",
        NEVER,
        (SQL,),
    ),
    Mutation(
        "setup: a success resets the error counter",
        "record_setup_analysis",
        "consecutive_errors = 0",
        "consecutive_errors = consecutive_errors",
        (SQL,),
    ),
    Mutation(
        "plan: stop and target must bracket the entry",
        "_open_position_from_plan",
        "(v_side = 'long' and (v_sl >= v_entry or v_tp <= v_entry))",
        "(false)",
        (SQL,),
    ),
    Mutation(
        "plan: the opened position is registered for management",
        "_open_position_from_plan",
        "v_reg := public.register_position_management(v_position, false);",
        "v_reg := '{}';",
        (SQL, POSITION_E2E),
    ),
    # initial analyses
    Mutation(
        "initial: a wait registers monitoring",
        "record_initial_analysis",
        "v_result := public._register_setup(p_signal_id, p_max_reanalyses);",
        "v_result := '{}';",
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "initial: a signal cancelled meanwhile is not applied",
        "record_initial_analysis",
        "if v_status <> 'new' then",
        NEVER,
        (SQL,),
    ),
    Mutation(
        "initial: a transient failure releases the claim",
        "record_initial_failure",
        "if p_release_claim then",
        NEVER,
        (SQL,),
    ),
    Mutation(
        "initial: the reconciler skips traders without auto_analyze_signals",
        "signals_missing_initial_analysis",
        "and t.auto_analyze_signals",
        "and true",
        (PROMISES,),
    ),
    Mutation(
        "initial: the reconciler skips signals already claimed",
        "signals_missing_initial_analysis",
        "and s.initial_claimed_at is null",
        "and true",
        (SETUP_E2E,),
    ),
    # management decisions
    Mutation(
        "manage: a decision for a superseded candle is stale",
        "record_management_decision",
        "if v_wf.last_candle_time is distinct from p_candle_time then",
        NEVER,
        (SQL,),
    ),
    Mutation(
        "manage: only an open position",
        "record_management_decision",
        "elsif v_pos.status <> 'open' then",
        "elsif false then",
        (SQL,),
    ),
    Mutation(
        "manage: a position changed since read is not touched",
        "record_management_decision",
        "elsif v_pos.version is distinct from p_expected_version then",
        "elsif false then",
        (SQL,),
    ),
    Mutation(
        "manage: a stop-loss stays on the losing side",
        "record_management_decision",
        "or v_sign * (p_price - p_new_stop_loss) <= 0) then",
        "or false) then",
        (SQL,),
    ),
    Mutation(
        "manage: a take-profit stays beyond the price",
        "record_management_decision",
        "or v_sign * (p_new_take_profit - p_price) <= 0) then",
        "or false) then",
        (SQL,),
    ),
    Mutation(
        "manage: a reduce fraction is below 1",
        "record_management_decision",
        "or p_reduce_fraction >= 1) then",
        "or p_reduce_fraction > 1) then",
        (SQL,),
    ),
    Mutation(
        "manage: adjust_sl applies",
        "record_management_decision",
        "set stop_loss = p_new_stop_loss",
        "set stop_loss = stop_loss",
        (SQL, POSITION_E2E),
    ),
    Mutation(
        "manage: adjust_tp applies",
        "record_management_decision",
        "set take_profit = p_new_take_profit",
        "set take_profit = take_profit",
        (PROMISES,),
    ),
    Mutation(
        "manage: reduce books its PnL",
        "record_management_decision",
        "v_qty := v_pos.contracts * p_reduce_fraction;",
        "v_qty := 0;",
        (SQL, POSITION_E2E),
    ),
    Mutation(
        "manage: close books the PnL",
        "record_management_decision",
        "v_pnl := v_sign * (v_exit - v_pos.entry_price) * v_pos.contracts;",
        "v_pnl := 0;",
        (SQL, POSITION_E2E),
    ),
    Mutation(
        "manage: close stops the workflow",
        "record_management_decision",
        "perform public.stop_workflow(v_wf.id, 'position_closed');",
        "null;",
        (SQL, POSITION_E2E),
    ),
    Mutation(
        "manage: a second decision for a candle applies nothing",
        "record_management_decision",
        "if v_decision is null then",
        NEVER,
        (SQL,),
    ),
    # failures
    Mutation(
        "failure: the maximum disables the workflow",
        "record_workflow_failure",
        "v_wf.consecutive_errors >= p_max_errors",
        "v_wf.consecutive_errors > p_max_errors",
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "failure: its user is notified",
        "record_workflow_failure",
        "values (v_user, v_wf.id, 'workflow_disabled',",
        "values (v_user, v_wf.id, 'paused',",
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "failure: errors are counted",
        "record_workflow_failure",
        "consecutive_errors = consecutive_errors + 1",
        "consecutive_errors = consecutive_errors",
        (SQL, SETUP_E2E),
    ),
    # stopping, fan-out, reconciler, gate
    Mutation("stop: idempotent", "stop_workflow", "if not v_active then", NEVER, (SQL, POSITION_E2E)),
    Mutation(
        "fan-out: only active workflows",
        "workflows_for_candle",
        "where w.is_active and",
        "where true and",
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "fan-out: only workflows not yet at this candle",
        "workflows_for_candle",
        "(w.last_candle_time is null or w.last_candle_time < p_candle_time)",
        "true",
        (SQL, SETUP_E2E),
    ),
    Mutation(
        "reconciler: registers a lost wait",
        "reconcile_workflows",
        "limit 1) = 'wait'",
        "limit 1) = 'none'",
        (SQL,),
    ),
    Mutation(
        "reconciler: registers a lost open position",
        "reconcile_workflows",
        "where p.status = 'open'",
        "where false",
        (SQL, POSITION_E2E),
    ),
    Mutation(
        "reconciler: stops workflows whose entity closed",
        "reconcile_workflows",
        "where w.is_active and ((w.workflow_type",
        "where false and ((w.workflow_type",
        (SQL,),
    ),
    Mutation(
        "gate: the deny list wins",
        "monitoring_allowed",
        "and not coalesce(p_user_id = any (r.deny_user_ids), true)",
        "and true",
        (SQL,),
    ),
    Mutation(
        "gate: the tiers filter", "monitoring_allowed", "u.subscription_tier = any (r.tiers)", "true", (SQL,)
    ),
    Mutation(
        "gate: a percentage, not on/off",
        "monitoring_allowed",
        "public.rollout_bucket(p_user_id) < r.percent",
        "r.percent > 0",
        (SQL,),
    ),
)


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


def run(mutation: Mutation, python: str) -> tuple[str, float]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cmon-sqlmut-") as scratch:
        folder = Path(scratch) / "migrations"
        if not apply(mutation, MIGRATIONS, folder):
            return "missing", 0.0
        env = {**os.environ, "CMON_TEST_MIGRATIONS_DIR": str(folder)}
        command = [python, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider", *mutation.tests]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    verdict = "killed" if done.returncode == 1 else ("survived" if done.returncode == 0 else "error")
    return verdict, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("match", nargs="?", default="", help="only mutations whose name contains this")
    parser.add_argument("--json", action="store_true", help="one JSON object per mutation")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.match.lower() in m.name.lower()]
    results: dict[str, int] = {}
    for mutation in chosen:
        verdict, seconds = run(mutation, sys.executable)
        results[verdict] = results.get(verdict, 0) + 1
        if args.json:
            print(json.dumps({"mutation": mutation.name, "function": mutation.function, "verdict": verdict}))
        else:
            print(f"{verdict:9} {seconds:6.1f}s  {mutation.function:34} {mutation.name}", flush=True)
    print(f"{results.get('killed', 0)}/{len(chosen)} killed " + json.dumps(results), flush=True)
    return 0 if results.get("killed", 0) == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
