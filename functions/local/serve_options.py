"""`cmon local`'s options: the parser's arguments and the llm-proxy transport they select.

Apart from the command (`serve`), so that the command module reads as what it runs.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from functions.local.stack import LLM_TRANSPORTS

DEFAULT_PORT = 8000
LOCAL_WEBHOOK_SECRET = "local-webhook-secret"  # noqa: S105 - a documented local default
LOCAL_ADMIN_KEY = "local-admin-key"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="API host (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"API port (default {DEFAULT_PORT}; 0 = any free port)"
    )
    parser.add_argument(
        "--database-url",
        help="use this Postgres instead of an embedded one (default: $DATABASE_URL, else embedded)",
    )
    parser.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations on start")
    parser.add_argument(
        "--market",
        default="live",
        metavar="live|spot|usdm|simulate|replay:FILE",
        help="candle source: live Binance (default), the simulator, or a recording",
    )
    parser.add_argument(
        "--streams",
        default="BTCUSDT@1m",
        help="SYMBOL@INTERVAL,... always subscribed (default BTCUSDT@1m); live mode "
        "adds the active workflows' pairs",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulate: simulated seconds per real second (60: a 1m candle a second)",
    )
    parser.add_argument("--seed", type=int, default=None, help="simulate: random seed")
    parser.add_argument(
        "--llm-proxy-url", help="a real llm-proxy (key from $LLM_PROXY_API_KEY); default: the loopback stub"
    )
    add_llm_transport_argument(parser)
    parser.add_argument("--webhook-secret", help=f"default: $WEBHOOK_SECRET, else {LOCAL_WEBHOOK_SECRET!r}")
    parser.add_argument("--admin-api-key", help=f"default: $ADMIN_API_KEY, else {LOCAL_ADMIN_KEY!r}")
    parser.add_argument(
        "--max-reanalyses", type=int, default=10, help="re-analyses of a wait before it expires (default 10)"
    )
    parser.add_argument(
        "--reconcile-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="run the reconciler this often (default 60; 0 = never)",
    )
    parser.add_argument(
        "--no-relay", action="store_true", help="do not install the NOTIFY triggers nor relay webhooks"
    )
    parser.add_argument(
        "--webhook-timeout-ms",
        type=int,
        default=5000,
        help="relay's POST timeout (pg_net's default is 1000; default 5000)",
    )
    parser.add_argument("--verbose", action="store_true", help="also print the handlers' JSON logs (stderr)")


def add_llm_transport_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--llm-transport",
        choices=LLM_TRANSPORTS,
        default=None,
        help="call llm-proxy over plain HTTP or as a Supabase Edge Function (default: "
        "$LLM_PROXY_TRANSPORT, else http); edge uses $SUPABASE_URL/$SUPABASE_KEY if set, else the stub",
    )


def llm_transport_options(args: argparse.Namespace) -> dict[str, Any]:
    """`local_services` keywords for `--llm-transport` / `LLM_PROXY_TRANSPORT` (checked)."""
    transport = args.llm_transport or os.environ.get("LLM_PROXY_TRANSPORT") or "http"
    if transport not in LLM_TRANSPORTS:
        raise ValueError(f"LLM_PROXY_TRANSPORT must be one of {', '.join(LLM_TRANSPORTS)}: {transport!r}")
    options: dict[str, Any] = {"llm_transport": transport}
    if transport == "edge" and os.environ.get("SUPABASE_URL"):
        if not os.environ.get("SUPABASE_KEY"):
            raise ValueError("SUPABASE_URL is set but SUPABASE_KEY is not (needed by the edge transport)")
        options["supabase_url"] = os.environ["SUPABASE_URL"]
        options["supabase_key"] = os.environ["SUPABASE_KEY"]
    return options
