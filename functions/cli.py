"""`cmon`: the one command-line entry point.

Every subcommand has `--help`; those that report take `--json`. Heavy imports happen
inside the subcommand that needs them, so `cmon --help` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from functions import cli_options


def _database_url(args: argparse.Namespace) -> str:
    url: str | None = getattr(args, "database_url", None) or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("cmon: no database: pass --database-url or set DATABASE_URL")
    return url


def _print(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(human(data))


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


# db ---------------------------------------------------------------------------------


def _db_migrate(args: argparse.Namespace) -> int:
    from functions.adapters.migrations import migrate

    def progress(message: str) -> None:
        if not args.json:
            print(f"  {message}", file=sys.stderr)

    result = migrate(_database_url(args), migrations_dir=args.migrations_dir, progress=progress)
    data = {
        "applied": [f"{m.version}_{m.name}" for m in result.applied],
        "already_applied": result.already_applied,
    }

    def human(d: dict[str, Any]) -> str:
        if not d["applied"]:
            return f"nothing to apply: {len(d['already_applied'])} migrations already applied"
        return f"applied {len(d['applied'])} migration(s): " + ", ".join(d["applied"])

    _print(args, data, human)
    return 0


# workflows ----------------------------------------------------------------------------


def _repo(args: argparse.Namespace) -> Any:
    from functions.adapters.postgres import Database
    from functions.adapters.repository import PostgresRepository

    return PostgresRepository(Database(_database_url(args)))


def _workflows_list(args: argparse.Namespace) -> int:
    rows = _repo(args).list_workflows(
        active=True if args.active else None, workflow_type=args.type, symbol=args.symbol, limit=args.limit
    )
    _print(
        args,
        rows,
        lambda r: _table(
            r,
            [
                "id",
                "workflow_type",
                "symbol",
                "interval",
                "is_active",
                "reanalysis_count",
                "consecutive_errors",
                "stopped_reason",
            ],
        ),
    )
    return 0


def _workflows_show(args: argparse.Namespace) -> int:
    from uuid import UUID

    detail = _repo(args).workflow_detail(UUID(args.workflow_id))

    def human(d: dict[str, Any]) -> str:
        head = "\n".join(f"{k:28} {d[k]}" for k in d if k not in ("analyses", "decisions", "errors"))
        parts = [head]
        if d["analyses"]:
            parts.append(
                "\nanalyses:\n"
                + _table(
                    d["analyses"], ["analysis_type", "candle_time", "decision", "confidence", "total_tokens"]
                )
            )
        if d["decisions"]:
            parts.append(
                "\ndecisions:\n"
                + _table(
                    d["decisions"], ["candle_time", "action", "source", "status", "rejection_reason", "price"]
                )
            )
        if d["errors"]:
            parts.append("\nerrors:\n" + _table(d["errors"], ["candle_time", "error_kind", "message"]))
        return "\n".join(parts)

    _print(args, detail, human)
    return 0


def _workflows_stop(args: argparse.Namespace) -> int:
    from uuid import UUID

    result = _repo(args).stop_workflow(UUID(args.workflow_id), args.reason)
    _print(args, result.model_dump(mode="json"), lambda r: f"{r['action']} {args.workflow_id}")
    return 0 if result.action in ("stopped", "already_stopped") else 1


# operations ----------------------------------------------------------------------------


def _metrics(args: argparse.Namespace) -> int:
    from functions.adapters import operations

    report = operations.metrics_report(_database_url(args), hours=args.hours)
    _print(args, report, operations.format_metrics)
    return 0


def _rollout(args: argparse.Namespace) -> int:
    from functions.adapters import operations

    url = _database_url(args)
    if args.rollout_command == "set":
        state = operations.rollout_set(
            url,
            percent=args.percent,
            tiers=args.tiers,
            allow=args.allow,
            deny=args.deny,
            enabled=args.enabled,
            actor=os.environ.get("USER"),
        )
    else:
        state = operations.rollout_show(url)
    _print(args, state, operations.format_rollout)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from functions.adapters import operations

    if not args.yes:
        if not sys.stdin.isatty():
            print("cmon rollback: refusing without --yes (no terminal to confirm on)", file=sys.stderr)
            return 2
        answer = input("Stop every active workflow and disable auto-analysis for elite users? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("aborted")
            return 1
    result = operations.rollback(_database_url(args), tiers=args.tiers)
    _print(
        args,
        result,
        lambda r: (
            f"rolled back: {r['workflows_stopped']} workflow(s) stopped, "
            f"{r['traders_disabled']} trader(s) with auto-analysis off, "
            f"rollout gate disabled"
        ),
    )
    return 0


def _cost(args: argparse.Namespace) -> int:
    from functions.core.cost import Projection, project

    projection = project(
        Projection(
            signals_per_day=args.signals_per_day,
            wait_rate=args.wait_rate,
            reanalyses_per_wait=args.reanalyses_per_wait,
            positions_per_day=args.positions_per_day,
            candles_per_position=args.candles_per_position,
            tokens_per_analysis=args.tokens_per_analysis,
            usd_per_million_tokens=args.usd_per_million_tokens,
        )
    )
    data: dict[str, Any] = {"projection": projection}
    if args.actual:
        from functions.adapters import operations

        data["actual"] = operations.token_usage(_database_url(args), hours=24)
        data["ratio"] = (
            data["actual"]["total_tokens"] / projection["tokens_per_day"]
            if projection["tokens_per_day"]
            else None
        )

    def human(d: dict[str, Any]) -> str:
        p = d["projection"]
        lines = [
            _table([{"part": k, "tokens/day": v} for k, v in p["breakdown"].items()], ["part", "tokens/day"]),
            f"\nprojected: {p['tokens_per_day']:,} tokens/day  ~${p['usd_per_month']:.2f}/month",
        ]
        if "actual" in d:
            lines.append(
                f"actual (last 24 h): {d['actual']['total_tokens']:,} tokens"
                f"  = {d['ratio']:.0%} of projection (alarm at 125%)"
            )
        return "\n".join(lines)

    _print(args, data, human)
    return 0


# feed, demo, local -------------------------------------------------------------------------


_PASSTHROUGH = {
    "demo": ("functions.local.demo", "play the brief's scenarios on embedded defaults (< 2 min)"),
    "local": ("functions.local.serve", "run the whole stack locally until Ctrl-C"),
    "feed": ("feed_service.__main__", "run the Binance candle feed (the always-on service)"),
}


def _run_passthrough(command: str, rest: list[str]) -> int:
    """Subcommands with their own parser, imported only when used (they pull in moto,
    uvicorn, websockets...), so `cmon --help` stays instant."""
    import importlib

    module_name, description = _PASSTHROUGH[command]
    module = importlib.import_module(module_name)
    if command == "feed":
        return int(module.main(rest))
    parser = argparse.ArgumentParser(prog=f"cmon {command}", description=description)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(rest)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cmon", description="Continuous monitoring for LLM-assisted trading."
    )
    cli_options.add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_db_args(p: argparse.ArgumentParser, report: bool = True) -> None:
        p.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL)")
        if report:
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    for name, (_module, help_text) in _PASSTHROUGH.items():
        sub.add_parser(name, help=help_text, add_help=False)  # dispatched in main()

    db = sub.add_parser("db", help="database commands").add_subparsers(dest="db_command", required=True)
    migrate = db.add_parser(
        "migrate", help="apply pending supabase/migrations (recorded like the Supabase CLI)"
    )
    add_db_args(migrate)
    migrate.add_argument(
        "--migrations-dir",
        type=Path,
        default=None,
        help="folder of <timestamp>_<name>.sql files (default: the repository's supabase/migrations)",
    )
    migrate.set_defaults(func=_db_migrate)

    wf = sub.add_parser("workflows", help="list, show and stop workflows").add_subparsers(
        dest="wf_command", required=True
    )
    lst = wf.add_parser("list", help="list workflows, newest first")
    add_db_args(lst)
    lst.add_argument("--active", action="store_true", help="only active workflows")
    lst.add_argument("--type", choices=["setup_monitoring", "position_management"])
    lst.add_argument("--symbol")
    lst.add_argument("--limit", type=int, default=50)
    lst.set_defaults(func=_workflows_list)
    show = wf.add_parser("show", help="one workflow with its analyses, decisions and errors")
    add_db_args(show)
    show.add_argument("workflow_id")
    show.set_defaults(func=_workflows_show)
    stop = wf.add_parser("stop", help="stop one workflow")
    add_db_args(stop)
    stop.add_argument("workflow_id")
    stop.add_argument("--reason", default="stopped_by_admin")
    stop.set_defaults(func=_workflows_stop)

    metrics = sub.add_parser("metrics", help="the brief's monitoring metrics, from the database")
    add_db_args(metrics)
    metrics.add_argument("--hours", type=float, default=24.0, help="window (default 24)")
    metrics.set_defaults(func=_metrics)

    rollout = sub.add_parser("rollout", help="who gets monitoring: show or set the rollout gate")
    rsub = rollout.add_subparsers(dest="rollout_command", required=True)
    rshow = rsub.add_parser("show", help="print the gate")
    add_db_args(rshow)
    rshow.set_defaults(func=_rollout)
    rset = rsub.add_parser("set", help="change the gate (unset options are left as they are)")
    add_db_args(rset)
    rset.add_argument("--percent", type=int, choices=range(0, 101), metavar="0-100")
    rset.add_argument(
        "--tiers", nargs="*", choices=["free", "pro", "elite"], help="only these tiers (no value: every tier)"
    )
    rset.add_argument("--allow", nargs="*", metavar="USER_ID", help="users always in (canary)")
    rset.add_argument("--deny", nargs="*", metavar="USER_ID", help="users always out")
    toggle = rset.add_mutually_exclusive_group()
    toggle.add_argument("--enable", dest="enabled", action="store_const", const=True)
    toggle.add_argument("--disable", dest="enabled", action="store_const", const=False)
    rset.set_defaults(func=_rollout)

    rollback = sub.add_parser("rollback", help="emergency stop: the brief's rollback plan")
    add_db_args(rollback)
    rollback.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rollback.add_argument(
        "--tiers", nargs="+", default=["elite"], help="tiers whose traders lose auto-analysis (default elite)"
    )
    rollback.set_defaults(func=_rollback)

    cost = sub.add_parser("cost", help="token usage projection (and actual usage with --actual)")
    add_db_args(cost)
    cost.add_argument("--actual", action="store_true", help="compare with the last 24 h in the database")
    cost.add_argument("--signals-per-day", type=float, default=100)
    cost.add_argument("--wait-rate", type=float, default=0.2)
    cost.add_argument("--reanalyses-per-wait", type=float, default=3)
    cost.add_argument("--positions-per-day", type=float, default=10)
    cost.add_argument("--candles-per-position", type=float, default=8)
    cost.add_argument("--tokens-per-analysis", type=int, default=1100)
    cost.add_argument("--usd-per-million-tokens", type=float, default=0.5)
    cost.set_defaults(func=_cost)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options, argv = cli_options.split_global_options(argv)
    cli_options.apply(options)
    try:
        if argv and argv[0] in _PASSTHROUGH:
            return _run_passthrough(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a CLI prints a clean line, not a traceback, for our own errors
        from functions.core.errors import CmonError

        if isinstance(exc, CmonError):
            print(f"cmon: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
