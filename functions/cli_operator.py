"""`cmon rollback …`, `cmon rollout …`, `cmon workflows resume`: the operator's face.

Only parsing and printing live here; every action is `functions.services.operator`
(the same facade the admin API calls), which calls one recording SQL function.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import Any

AddDbArgs = Callable[..., None]


def _operator(args: argparse.Namespace) -> Any:
    from functions.adapters.operator_db import PostgresOperatorStore
    from functions.adapters.postgres import Database
    from functions.cli import _database_url
    from functions.services.operator import Operator

    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry / no USER in a container
        who = "unknown"
    return Operator(PostgresOperatorStore(Database(_database_url(args))), actor=f"cli:{who}")


def _confirm(args: argparse.Namespace, command: str, question: str) -> int | None:
    """None to go on; an exit code when the operator did not confirm."""
    if args.yes:
        return None
    if not sys.stdin.isatty():
        print(f"cmon {command}: refusing without --yes (no terminal to confirm on)", file=sys.stderr)
        return 2
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        print("aborted")
        return 1
    return None


# rollback ---------------------------------------------------------------------------------


def _rollback(args: argparse.Namespace) -> int:
    from functions.cli import _print

    refused = _confirm(
        args,
        "rollback",
        f"Stop every active workflow, close the gate and turn off auto-analysis for {', '.join(args.tiers)}?",
    )
    if refused is not None:
        return refused
    result = _operator(args).rollback(reason=args.reason, tiers=args.tiers)
    _print(
        args,
        result,
        lambda r: (
            f"rollback {r['rollback_id']}: {r['workflows_stopped']} workflow(s) stopped, "
            f"{r['traders_disabled']} trader(s) with auto-analysis off, rollout gate disabled\n"
            f"undo it exactly with: cmon rollback undo {r['rollback_id']} --yes"
        ),
    )
    return 0


def _rollback_list(args: argparse.Namespace) -> int:
    from functions.cli import _print, _table

    rows = _operator(args).list_rollbacks(limit=args.limit)
    columns = ["id", "created_at", "actor", "reason", "workflows_stopped", "traders_disabled", "undone"]
    _print(args, rows, lambda r: _table(r, columns))
    return 0


def _format_undo(r: dict[str, Any]) -> str:
    if r["action"] == "already_undone":
        return (
            f"rollback {r['rollback_id']} was already undone at {r['undone_at']} by {r['undone_by']}: "
            "nothing changed"
        )
    gate = r["gate_after"]
    lines = [
        f"undone rollback {r['rollback_id']}: {r['traders_enabled']} trader(s) with auto-analysis on again, "
        f"{r['workflows_restored']} workflow(s) active again, gate restored "
        f"(enabled={gate['enabled']}, percent={gate['percent']}, tiers={gate['tiers']})"
    ]
    for skipped in r["workflows_not_restored"]:
        lines.append(f"  not restored: {skipped['workflow_id']} ({skipped['reason']})")
    return "\n".join(lines)


def _rollback_undo(args: argparse.Namespace) -> int:
    from functions.cli import _print
    from functions.core.operator import parse_id

    rollback_id = parse_id(args.rollback_id, "rollback_id")  # a typo fails before the prompt
    refused = _confirm(args, "rollback undo", f"Restore what rollback {rollback_id} changed?")
    if refused is not None:
        return refused
    result = _operator(args).undo_rollback(rollback_id)
    _print(args, result, _format_undo)
    return 0


# workflows resume ----------------------------------------------------------------------------


def _workflows_resume(args: argparse.Namespace) -> int:
    from functions.cli import _print

    result = _operator(args).resume_workflow(args.workflow_id)

    def human(r: dict[str, Any]) -> str:
        if r["action"] == "resumed":
            return (
                f"resumed {r['workflow_id']} ({r['workflow_type']} {r['symbol']} {r['interval']}, "
                f"was {r['previous_reason']}): analysed at the next candle"
            )
        if r["action"] == "already_active":
            return f"{r['workflow_id']} is already active: nothing changed"
        return f"refused: {r['workflow_id']} cannot be resumed ({r['reason']})"

    _print(args, result.model_dump(mode="json"), human)
    return 1 if result.action == "refused" else 0


# rollout ---------------------------------------------------------------------------------------


def _format_gate(r: dict[str, Any]) -> str:
    keys = [k for k in r if k not in ("before", "changed")]
    width = max(len(k) for k in keys)
    lines = [f"{k.ljust(width)}  {r[k]}" for k in keys]
    if "changed" in r:
        verb = "would change" if r.get("dry_run") else "changed"
        lines.append(f"{verb.ljust(width)}  {', '.join(r['changed']) or 'nothing'}")
        if r.get("dry_run"):
            lines.append("(dry run: nothing written)")
    return "\n".join(lines)


def _rollout_show(args: argparse.Namespace) -> int:
    from functions.cli import _print

    _print(args, _operator(args).rollout_status(), _format_gate)
    return 0


def _rollout_set(args: argparse.Namespace) -> int:
    from functions.cli import _print

    result = _operator(args).rollout_update(
        percent=args.percent,
        tiers=args.tiers,
        allow=args.allow,
        deny=args.deny,
        enabled=args.enabled,
        # An option added to `set` with dest="gate_<column>" sets that column of the gate row
        # (e.g. another branch's --daily-token-cap): rollout_update is generic over columns.
        extra={
            k.removeprefix("gate_"): v
            for k, v in vars(args).items()
            if k.startswith("gate_") and v is not None
        },
        reason=args.reason,
        dry_run=args.dry_run,
    )
    _print(args, result, _format_gate)
    return 0


# parsers ---------------------------------------------------------------------------------------


def add_rollout(sub: Any, add_db_args: AddDbArgs) -> Any:
    """`cmon rollout show|set`; returns the `set` parser so that options can be added to it:
    one with `dest="gate_<column>"` sets that column of `rollout_settings`."""
    rollout = sub.add_parser("rollout", help="who gets monitoring: show or set the rollout gate")
    rsub = rollout.add_subparsers(dest="rollout_command", required=True)
    rshow = rsub.add_parser("show", help="print the gate and how many users and traders it admits right now")
    add_db_args(rshow)
    rshow.set_defaults(func=_rollout_show)
    rset = rsub.add_parser(
        "set",
        help="change the gate (unset options are left as they are); recorded in operator_actions",
        description="Change the rollout gate in one transaction (public.rollout_update): only the "
        "options given change; before/after, who and why are recorded in operator_actions. "
        "Prints the new gate and how many users and traders it admits.",
    )
    add_db_args(rset)
    rset.add_argument("--percent", type=int, choices=range(0, 101), metavar="0-100")
    rset.add_argument(
        "--tiers", nargs="*", choices=["free", "pro", "elite"], help="only these tiers (no value: every tier)"
    )
    rset.add_argument(
        "--allow", nargs="*", metavar="USER_ID", help="users always in (canary); replaces the list"
    )
    rset.add_argument("--deny", nargs="*", metavar="USER_ID", help="users always out; replaces the list")
    toggle = rset.add_mutually_exclusive_group()
    toggle.add_argument("--enable", dest="enabled", action="store_const", const=True)
    toggle.add_argument("--disable", dest="enabled", action="store_const", const=False)
    rset.add_argument("--reason", help="why (kept in the audit trail)")
    rset.add_argument(
        "--dry-run", action="store_true", help="print the counts the change would admit; write nothing"
    )
    rset.set_defaults(func=_rollout_set)
    return rset


def add_rollback(sub: Any, add_db_args: AddDbArgs) -> None:
    rollback = sub.add_parser(
        "rollback",
        help="emergency stop (the rollout's rollback plan), recorded so that it can be undone",
        description="Without a subcommand: in one transaction close the rollout gate, turn off "
        "auto_analyze_signals for the tiers' traders and stop every active workflow "
        "(stopped_reason 'rollback'), recording exactly which rows changed; prints the "
        "rollback_id. `list` shows past rollbacks, `undo ID` restores one exactly.",
    )
    add_db_args(rollback)
    rollback.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rollback.add_argument("--reason", help="why (kept with the rollback)")
    rollback.add_argument(
        "--tiers",
        nargs="+",
        default=["elite"],
        choices=["free", "pro", "elite"],
        help="tiers whose traders lose auto-analysis (default elite)",
    )
    rollback.set_defaults(func=_rollback)
    rsub = rollback.add_subparsers(dest="rollback_command", metavar="{list,undo}")
    lst = rsub.add_parser("list", help="past rollbacks, newest first, and whether each was undone")
    add_db_args(lst)
    lst.add_argument("--limit", type=int, default=50)
    lst.set_defaults(func=_rollback_list)
    undo = rsub.add_parser(
        "undo",
        help="restore exactly what one rollback changed",
        description="In one transaction: the traders it turned off get auto_analyze_signals back, "
        "the workflows it stopped are active again where their signal or position is still open "
        "(the others are listed with why), the gate row is as it was before the rollback. "
        "A second undo changes nothing and says so.",
    )
    add_db_args(undo)
    undo.add_argument("rollback_id", help="the id printed by `cmon rollback` (or `cmon rollback list`)")
    undo.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    undo.set_defaults(func=_rollback_undo)


def add_workflows_resume(wf: Any, add_db_args: AddDbArgs) -> None:
    resume = wf.add_parser(
        "resume",
        help="resume a stopped or auto-disabled workflow whose signal or position is still open",
        description="Active again, consecutive errors reset, stop reason cleared: analysed at the "
        "next candle. Refused (exit 1) when the signal is finished or the position closed. "
        "Recorded in operator_actions.",
    )
    add_db_args(resume)
    resume.add_argument("workflow_id")
    resume.set_defaults(func=_workflows_resume)
