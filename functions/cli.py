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

from functions import cli_operator, cli_options


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


def _uuid_arg(value: str) -> str:
    """An id argument, checked by argparse: a typo is a usage error (exit 2), not a traceback."""
    from uuid import UUID

    try:
        return str(UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {value!r}") from None


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
        "checksums_recorded": result.checksums_recorded,
    }

    def human(d: dict[str, Any]) -> str:
        if not d["applied"]:
            return f"nothing to apply: {len(d['already_applied'])} migrations already applied"
        return f"applied {len(d['applied'])} migration(s): " + ", ".join(d["applied"])

    _print(args, data, human)
    return 0


def _db_status(args: argparse.Namespace) -> int:
    from functions.db_commands import db_status

    return db_status(_database_url(args), migrations_dir=args.migrations_dir, as_json=args.json)


def _db_install_webhooks(args: argparse.Namespace) -> int:
    from functions.db_commands import install_webhooks

    return install_webhooks(_database_url(args), args)


# workflows ----------------------------------------------------------------------------


def _repo(args: argparse.Namespace) -> Any:
    from functions.adapters.postgres import Database
    from functions.adapters.repository import PostgresRepository

    return PostgresRepository(Database(_database_url(args)))


def _reads(args: argparse.Namespace) -> Any:
    from functions.adapters.operations import OperatorReads
    from functions.adapters.postgres import Database

    return OperatorReads(Database(_database_url(args)))


def _workflows_list(args: argparse.Namespace) -> int:
    rows = _reads(args).list_workflows(
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

    detail = _reads(args).workflow_detail(UUID(args.workflow_id))

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

    report = operations.metrics_report(
        _database_url(args), hours=args.hours, usd_per_1k_tokens=_usd_per_1k(args)
    )
    _print(args, report, operations.format_metrics)
    return 0


def _usd_per_1k(args: argparse.Namespace) -> float:
    """The flag, else TOKEN_PRICE_USD_PER_1K (the settings' default)."""
    from functions.settings import Settings

    price = getattr(args, "usd_per_1k_tokens", None)
    return float(Settings().token_price_usd_per_1k if price is None else price)


def _cost(args: argparse.Namespace) -> int:
    from functions.core.cost import Projection, compare, project

    projection = project(
        Projection(
            signals_per_day=args.signals_per_day,
            wait_rate=args.wait_rate,
            reanalyses_per_wait=args.reanalyses_per_wait,
            positions_per_day=args.positions_per_day,
            candles_per_position=args.candles_per_position,
            tokens_per_analysis=args.tokens_per_analysis,
            usd_per_1k_tokens=_usd_per_1k(args),
        )
    )
    data: dict[str, Any] = {"projection": projection}
    if args.actual:
        from functions.adapters import operations

        actual = operations.token_usage(_database_url(args), hours=24, usd_per_1k_tokens=_usd_per_1k(args))
        data["actual"] = actual
        data["against"] = compare(
            projection["tokens_per_day"], actual["total_tokens"], 24, actual["rollout_admitted_share"]
        )
        data["ratio"] = data["against"]["ratio"]

    def human(d: dict[str, Any]) -> str:
        p = d["projection"]
        lines = [
            _table([{"part": k, "tokens/day": v} for k, v in p["breakdown"].items()], ["part", "tokens/day"]),
            f"\nprojected (all users): {p['tokens_per_day']:,} tokens/day  ~${p['usd_per_day']:.2f}/day"
            f"  ~${p['usd_per_month']:.2f}/month at ${p['usd_per_1k_tokens']}/1k tokens",
        ]
        if "actual" in d:
            a, c = d["actual"], d["against"]
            ratio = "n/a" if c["ratio"] is None else f"{c['ratio']:.0%}"
            lines.append(
                f"actual (last 24 h): {a['total_tokens']:,} tokens  ~${a['cost_usd']:.2f}"
                f"  = {ratio} of {c['expected_tokens']:,} expected for the {c['admitted_share']:.0%}"
                f" of users the rollout admits (alarm at {c['alarm_percent']}%)"
            )
        return "\n".join(lines)

    _print(args, data, human)
    return 0


# feed, demo, local -------------------------------------------------------------------------


_PASSTHROUGH = {
    "demo": ("functions.local.demo", "play the four monitoring scenarios on embedded defaults (< 2 min)"),
    "local": ("functions.local.serve", "run the whole stack locally until Ctrl-C"),
    "feed": ("feed_service.__main__", "run the Binance candle feed (the always-on service)"),
    "replay": ("functions.local.replay", "the real pipeline over historical candles: preview a change"),
    "report": ("functions.local.report", "a self-contained HTML report of a replay or a live window"),
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


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text}")
    return value


def _tier_cap(text: str) -> tuple[str, int]:
    tier, sep, cap = text.partition("=")
    if not sep or tier not in ("free", "pro", "elite"):
        raise argparse.ArgumentTypeError(f"expected TIER=N with TIER free, pro or elite: {text!r}")
    return tier, _non_negative_int(cap)


class _TierCaps(argparse.Action):
    """`TIER=N ...` as the jsonb object `daily_token_cap_by_tier` expects."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, dict(values))


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
    db_status = db.add_parser(
        "status", help="applied, pending and changed migrations (exit 1 if an applied file changed)"
    )
    add_db_args(db_status)
    db_status.add_argument("--migrations-dir", type=Path, default=None, help="as for `cmon db migrate`")
    db_status.set_defaults(func=_db_status)
    hooks = db.add_parser(
        "install-webhooks",
        help="install the three Supabase database webhooks (pg_net), the secret in Supabase Vault",
    )
    add_db_args(hooks)
    hooks.add_argument("--url", required=True, help="the API's webhook URL (stack output WebhookUrl)")
    hooks.add_argument(
        "--timeout-ms", type=int, default=5000, help="pg_net timeout, 1000-10000 (default 5000)"
    )
    hooks.add_argument("--secret-name", default="cmon_webhook_secret", help="the Vault secret's name")
    secret = hooks.add_mutually_exclusive_group()
    secret.add_argument(
        "--secret-env",
        default="WEBHOOK_SECRET",
        metavar="VAR",
        help="environment variable holding the secret to store (default WEBHOOK_SECRET)",
    )
    secret.add_argument("--keep-secret", action="store_true", help="use the secret already in Vault")
    hooks.set_defaults(func=_db_install_webhooks)

    wf = sub.add_parser("workflows", help="list, show, stop and resume workflows").add_subparsers(
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
    show.add_argument("workflow_id", type=_uuid_arg)
    show.set_defaults(func=_workflows_show)
    stop = wf.add_parser("stop", help="stop one workflow")
    add_db_args(stop)
    stop.add_argument("workflow_id", type=_uuid_arg)
    stop.add_argument("--reason", default="stopped_by_admin")
    stop.set_defaults(func=_workflows_stop)
    cli_operator.add_workflows_resume(wf, add_db_args)

    metrics = sub.add_parser(
        "metrics", help="monitoring metrics (LLM calls, tokens, errors), from the database"
    )
    add_db_args(metrics)
    metrics.add_argument("--hours", type=float, default=24.0, help="window (default 24)")
    metrics.add_argument(
        "--usd-per-1k-tokens",
        type=_non_negative_float,
        default=None,
        help="price of 1,000 tokens in USD (default: $TOKEN_PRICE_USD_PER_1K or 0.0005)",
    )
    metrics.set_defaults(func=_metrics)

    rset = cli_operator.add_rollout(sub, add_db_args)
    rset.add_argument(
        "--daily-token-cap",
        dest="gate_daily_token_cap",
        type=_non_negative_int,
        metavar="N",
        help="per-user LLM tokens per UTC day; over it a job is skipped (reason token_cap); 0 = no cap",
    )
    rset.add_argument(
        "--daily-token-cap-tier",
        dest="gate_daily_token_cap_by_tier",
        type=_tier_cap,
        nargs="+",
        action=_TierCaps,
        metavar="TIER=N",
        help="tiers' own daily caps, overriding --daily-token-cap for them, e.g. free=20000 elite=0"
        " (0: no cap for that tier); replaces the per-tier caps set before",
    )
    rset.add_argument(
        "--shadow-percent",
        dest="gate_shadow_percent",
        type=int,
        choices=range(0, 101),
        metavar="0-100",
        help="shadow cohort: the next N%% of buckets after --percent are analysed and recorded,"
        " nothing applied (no signal or position changes); 0 = no shadow users",
    )
    cli_operator.add_rollback(sub, add_db_args)

    cost = sub.add_parser("cost", help="token usage projection (and actual usage with --actual)")
    add_db_args(cost)
    cost.add_argument("--actual", action="store_true", help="compare with the last 24 h in the database")
    cost.add_argument("--signals-per-day", type=float, default=100)
    cost.add_argument("--wait-rate", type=float, default=0.2)
    cost.add_argument("--reanalyses-per-wait", type=float, default=3)
    cost.add_argument("--positions-per-day", type=float, default=10)
    cost.add_argument("--candles-per-position", type=float, default=8)
    cost.add_argument("--tokens-per-analysis", type=int, default=1100)
    cost.add_argument(
        "--usd-per-1k-tokens",
        type=_non_negative_float,
        default=None,
        help="price of 1,000 tokens in USD (default: $TOKEN_PRICE_USD_PER_1K or 0.0005)",
    )
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
